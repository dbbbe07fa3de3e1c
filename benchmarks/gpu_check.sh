#!/usr/bin/env bash
# A GPU check that fits in minutes, for a bare CUDA machine with torch and transformers (no
# vLLM, no internet): SmolLM2-135M as a transformers checkpoint on CUDA — PPL on the WikiText-2
# excerpt (llama-perplexity's chunks: the second half of each 512-token window scored), KLD
# and top-1 agreement of bfloat16 and float16 against float32, pp/tg tokens/s by llama-bench's
# protocol with and without torch.cuda.synchronize() before the clock (what an unsynchronized
# timer reads), peak VRAM (torch's reserved peak, and NVML's count over the process tree
# where nvidia-ml-py is installed) — and, given an sdist and nvcc, llama-cpp-python built with
# CUDA, its offload flag and tg rate on the GGUF. One table on stdout.
#
#   bash benchmarks/gpu_check.sh [CHECKPOINT_DIR]
#
# CHECKPOINT_DIR: a transformers checkpoint of SmolLM2-135M (default: the smollm2_hf baseline
# in $QUANTGATE_CACHE, written by any CPU run of the cpu_slow tier). GGUF for the llama.cpp row:
# $GPU_CHECK_GGUF; sdist: $GPU_CHECK_LLAMA_SDIST. Without a CUDA device it says so in one line
# and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is false or torch is missing); nothing to check"
    exit 0
fi

CKPT=${1:-}
if [ -z "$CKPT" ]; then
    CACHE=${QUANTGATE_CACHE:-$HOME/.cache/quantgate}
    CKPT=$(ls -d "$CACHE"/artifacts/*/smollm2_hf-baseline 2>/dev/null | head -1 || true)
fi
if [ -z "$CKPT" ] || [ ! -f "$CKPT/config.json" ]; then
    echo "gpu_check: no SmolLM2 checkpoint: pass CHECKPOINT_DIR (a transformers folder)" >&2
    exit 2
fi

"$PY" - "$CKPT" <<'EOF'
import math, os, sys, time
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ckpt = sys.argv[1]
text = open("fixtures/data/wikitext2/wiki.test.excerpt.raw").read()
tok = AutoTokenizer.from_pretrained(ckpt)
ids = tok(text, return_tensors="pt").input_ids[0]
n_ctx, rows = 512, []
chunks = [ids[i : i + n_ctx] for i in range(0, len(ids) - n_ctx + 1, n_ctx)]

def load(dtype):
    return AutoModelForCausalLM.from_pretrained(ckpt, dtype=dtype).to("cuda").eval()

@torch.no_grad()
def logprobs(model):
    out = []
    for c in chunks:
        logits = model(c[None].cuda()).logits[0].float()
        out.append(torch.log_softmax(logits[n_ctx // 2 : -1], -1))
    return out

def ppl(lps):
    nll = [-lp.gather(1, c[n_ctx // 2 + 1 :, None].cuda()).sum().item() for lp, c in zip(lps, chunks)]
    return math.exp(sum(nll) / sum(n_ctx - n_ctx // 2 - 1 for _ in chunks))

@torch.no_grad()
def rate(model, kind, sync, rounds=5):
    gen = torch.Generator().manual_seed(1234)
    prompt = torch.randint(0, model.config.vocab_size, (1, 512), generator=gen).cuda()
    def run():
        if kind == "pp":
            model(prompt, use_cache=True, logits_to_keep=1)
        else:
            past = None
            for t in prompt[0, :128]:
                past = model(t.view(1, 1), past_key_values=past, use_cache=True,
                             logits_to_keep=1).past_key_values
        if sync:
            torch.cuda.synchronize()
    run(); torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter(); run(); times.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
    return (512 if kind == "pp" else 128) / (sum(times) / len(times))

def tree_vram_mib():
    try:
        import psutil, pynvml
    except ImportError:
        return None
    pynvml.nvmlInit()
    me = psutil.Process()
    tree = {me.pid, *(c.pid for c in me.children(recursive=True))}
    used = sum(p.usedGpuMemory or 0
               for i in range(pynvml.nvmlDeviceGetCount())
               for p in pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(i))
               if p.pid in tree)
    return used / 2**20

t_start = time.perf_counter()
base_model = load(torch.float32)
base = logprobs(base_model)
base_ppl = ppl(base)
rows.append(("float32", f"{base_ppl:.4f}", "0", "100.00",
             f"{rate(base_model, 'pp', True):.0f} / {rate(base_model, 'pp', False):.0f}",
             f"{rate(base_model, 'tg', True):.0f} / {rate(base_model, 'tg', False):.0f}",
             f"{torch.cuda.max_memory_reserved() / 2**20:.0f}", str(tree_vram_mib())))
del base_model
for dtype in (torch.bfloat16, torch.float16):
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    m = load(dtype)
    lps = logprobs(m)
    kld = sum((b.exp() * (b - v)).sum().item() for b, v in zip(base, lps)) / sum(len(b) for b in base)
    top1 = sum((b.argmax(-1) == v.argmax(-1)).sum().item() for b, v in zip(base, lps)) / sum(len(b) for b in base)
    rows.append((str(dtype).split(".")[1], f"{ppl(lps):.4f}", f"{kld:.6f}", f"{100 * top1:.2f}",
                 f"{rate(m, 'pp', True):.0f} / {rate(m, 'pp', False):.0f}",
                 f"{rate(m, 'tg', True):.0f} / {rate(m, 'tg', False):.0f}",
                 f"{torch.cuda.max_memory_reserved() / 2**20:.0f}", str(tree_vram_mib())))
    del m
print(f"gpu_check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
      f"{len(chunks)} chunks of {n_ctx}, {time.perf_counter() - t_start:.0f} s")
head = ("weights", "PPL", "mean KLD", "top-1 %", "pp t/s sync / no sync", "tg t/s sync / no sync",
        "peak reserved MiB", "NVML tree MiB")
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for r in rows:
    print("| " + " | ".join(r) + " |")
EOF

# llama.cpp with CUDA from the sdist, if one is given and nvcc can build it (about 5 min)
SDIST=${GPU_CHECK_LLAMA_SDIST:-}
if [ -n "$SDIST" ] && command -v nvcc >/dev/null; then
    VENV=$(mktemp -d)/venv
    "$PY" -m venv --system-site-packages "$VENV"
    if CMAKE_ARGS=-DGGML_CUDA=on CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) timeout 420 \
        "$VENV/bin/pip" install -q --no-deps --no-build-isolation --no-cache-dir "$SDIST"; then
        "$VENV/bin/python" -c 'import llama_cpp; print("| llama-cpp-python", llama_cpp.__version__, "| GPU offload:", llama_cpp.llama_supports_gpu_offload(), "|")'
    else
        echo "| llama-cpp-python | CUDA build failed or ran past 7 min |"
    fi
else
    echo "| llama-cpp-python | not built: set GPU_CHECK_LLAMA_SDIST to its sdist (and put nvcc on PATH) |"
fi
