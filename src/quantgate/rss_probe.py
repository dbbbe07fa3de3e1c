"""Child process for quantgate.throughput.peak_rss_mib: load, evaluate 32 tokens, print peak RSS.

Usage: python -m quantgate.rss_probe MODEL.gguf N_CTX N_THREADS
"""

from __future__ import annotations

import json
import os
import resource
import sys


def main(argv: list[str]) -> int:
    from llama_cpp import Llama

    path, n_ctx, n_threads = argv[0], int(argv[1]), int(argv[2]) or os.cpu_count() or 1
    llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False)
    llm.eval(llm.tokenize(b"The quick brown fox jumps over the lazy dog. " * 3)[:32])
    # ru_maxrss is KiB on Linux
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
