"""Child process for quantgate.throughput.peak_rss_mib: load an artifact with its backend,
evaluate a 32-token prompt, print the peak RSS.

Usage: python -m quantgate.rss_probe '{"backend": ..., "artifact": {...}, "settings": {...}}'
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

PROMPT = "The quick brown fox jumps over the lazy dog. " * 3


def main(argv: list[str]) -> int:
    from quantgate.artifacts import Artifact
    from quantgate.backends import backend_class
    from quantgate.registry import BackendSettings

    spec = json.loads(argv[0])
    a = spec["artifact"]
    if spec["backend"] == "llama_cpp":
        # one context that keeps the last logits row only, as a deployment would (the gate's
        # backend keeps two contexts, one with every row's logits, for scoring)
        from llama_cpp import Llama

        settings = spec["settings"]
        llm = Llama(
            model_path=a["path"],
            n_ctx=settings["n_ctx"],
            n_threads=settings["n_threads"] or os.cpu_count() or 1,
            n_gpu_layers=settings["n_gpu_layers"],
            verbose=False,
        )
        llm.eval(llm.tokenize(PROMPT.encode())[:32])
        print(json.dumps({"peak_rss_mib": peak_rss_kib() / 1024}))
        return 0
    # the facts (info) are not needed to load: only the path, identity and load-time notes
    artifact = Artifact(a["label"], Path(a["path"]), a["sha256"], None, a["notes"])  # type: ignore[arg-type]
    backend = backend_class(spec["backend"])(artifact, BackendSettings(**spec["settings"]))
    backend.process_prompt(
        backend.tokenize("The quick brown fox jumps over the lazy dog. " * 3)[:32]
    )
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
