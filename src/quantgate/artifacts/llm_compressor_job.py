"""One llm-compressor ``oneshot`` run: a transformers checkpoint in, a compressed-tensors one out.

Runs as a script in the quantizer environment (``make quantize-env``), never imported by the
gate: llm-compressor pins its own transformers and compressed-tensors, so it lives apart from
the evaluation environment, as in llm-compressor's own test setup. It imports nothing from
quantgate. Its one argument is a JSON job:

    {"source": dir, "output": dir, "recipe": [{"modifier": ..., ...}],
     "calibration": text file or null, "calibration_chunks": int, "n_ctx": int, "seed": int}

Calibration rows are consecutive n_ctx-token chunks of the text, like the perplexity protocol.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

MODIFIER_MODULES = {
    "QuantizationModifier": "llmcompressor.modifiers.quantization",
    "GPTQModifier": "llmcompressor.modifiers.quantization",
    "AWQModifier": "llmcompressor.modifiers.awq",
    "SmoothQuantModifier": "llmcompressor.modifiers.smoothquant",
    # one-shot pruning: unstructured (mask_structure "0:0") or N:M semi-structured ("2:4")
    "SparseGPTModifier": "llmcompressor.modifiers.pruning",
    "WandaPruningModifier": "llmcompressor.modifiers.pruning",
}


def build_recipe(steps: list[dict[str, Any]]) -> list[Any]:
    import importlib

    recipe = []
    for step in steps:
        kwargs = dict(step)
        name = kwargs.pop("modifier")
        cls = getattr(importlib.import_module(MODIFIER_MODULES[name]), name)
        recipe.append(cls(**kwargs))
    return recipe


def calibration_dataset(tokenizer: Any, path: str, n_chunks: int, n_ctx: int) -> Any:
    from datasets import Dataset

    with open(path, encoding="utf-8") as fh:
        ids = tokenizer(fh.read()).input_ids
    rows = [ids[i : i + n_ctx] for i in range(0, len(ids) - n_ctx + 1, n_ctx)][:n_chunks]
    if len(rows) < n_chunks:
        raise SystemExit(
            f"{path}: {len(ids)} tokens make {len(rows)} chunks of {n_ctx}, "
            f"calibration_chunks asks for {n_chunks}; lower it or use a longer text"
        )
    return Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * n_ctx for _ in rows]})


def main(job: dict[str, Any]) -> None:
    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    torch.manual_seed(job["seed"])
    # float32 on CPU (the gate's CPU baseline dtype, which every CPU kernel supports); on a GPU
    # machine the checkpoint's own dtype, and llm-compressor onloads layers to the GPU itself
    dtype = "auto" if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        job["source"], dtype=dtype, trust_remote_code=False
    )
    tokenizer = AutoTokenizer.from_pretrained(job["source"], trust_remote_code=False)
    kwargs: dict[str, Any] = {}
    if job["calibration"]:
        kwargs = {
            "dataset": calibration_dataset(
                tokenizer, job["calibration"], job["calibration_chunks"], job["n_ctx"]
            ),
            "num_calibration_samples": job["calibration_chunks"],
            "max_seq_length": job["n_ctx"],
        }
    oneshot(model=model, recipe=build_recipe(job["recipe"]), **kwargs)
    model.save_pretrained(job["output"], save_compressed=True)
    tokenizer.save_pretrained(job["output"])
    print(f"quantgate: oneshot done in {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--versions":
        from importlib.metadata import version

        names = ("llmcompressor", "compressed-tensors", "transformers", "torch")
        print(json.dumps({name: version(name) for name in names}))
    else:
        main(json.loads(sys.argv[1]))
