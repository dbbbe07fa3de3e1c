"""The baselines a model's pairs compare against: the baseline's PPL/KLD log-probs and its
score on every benchmark. A night across machines runs this first, once per model, with the
shared store, so that no shard computes a baseline another job already scored:

    pytest tests/test_baselines.py --model llama31 --store s3://bucket/quantgate

It belongs to no tier (-m): a stage selects it by path. Not a gate: it fails only when a
baseline cannot be scored (zero items, a non-finite score).
"""

import math


def test_baselines(model_key, quantgate):
    quality, scores = quantgate.baselines(model_key)
    assert quality.n_scored > 0 and math.isfinite(quality.ppl), quality
    print(f"{model_key} baseline: PPL {quality.ppl:.4f} over {quality.n_scored} tokens")
    for name, result in scores.items():
        print(
            f"{model_key} baseline: {name} {result.metric} = {result.score:.4f} "
            f"on {result.n_items} items"
        )
