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
    print(json.dumps({"peak_rss_mib": peak_rss_kib() / 1024}))
    return 0


def peak_rss_kib() -> float:
    """Peak RSS of this process image.

    VmHWM belongs to the address space, which execve replaces; ru_maxrss does not reset on exec,
    so in a child forked from a big parent it reports the parent's RSS instead of ours.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
