"""Noise floor: the baseline against itself, loaded a second time with its arithmetic perturbed
(the other KV-cache precision and a quarter of the batch size: same weights, other rounding).
What it measures (self-KLD, self-PPL change, and per benchmark D, flips, answers changed, Dgold
and choice_kld) is what no compression can be blamed for; the summary shows it beside every
gate, and the thresholds sit above it by design. Not gated. A model's entry says which tiers run it
(``noise_floor_marks``; smollm2's smoke tier does):

    pytest tests/test_noise_floor.py --model smollm2
"""

import json

import pytest

from quantgate.report.rows import ROW_PROPERTY, noise_floor_row
from quantgate.verdicts.stats import proportion_interval


@pytest.mark.noise_floor
def test_noise_floor(model_key, quantgate, record_property):
    quality, comparisons = quantgate.noise_floor(model_key)
    settings = quantgate.loading.noise_settings(model_key)
    noise = f"kv {settings.kv_cache_type}, n_batch {settings.n_batch}"
    m, iv = quality.metrics, quality.intervals
    rows = [
        noise_floor_row(model_key, noise, name, m[name], interval=iv.get(name))
        for name in ("kld_mean", "kld_p99", "top1_agreement_pct", "ln_ppl_ratio")
    ]
    rows.append(
        noise_floor_row(
            model_key,
            noise,
            "ppl_increase_pct",
            m["ppl_increase_pct"],
            interval=iv["ppl_increase_pct"],
            ppl=quality.ppl,
            ppl_baseline=quality.ppl_baseline,
        )
    )
    for name, c in comparisons.items():
        c_items = c.compressed.n_items
        if c.baseline_score > 0:  # else D is undefined (a 135M model's GSM8K)
            rows.append(
                noise_floor_row(
                    model_key,
                    noise,
                    f"D_{name}",
                    c.d,
                    interval=c.interval(),
                    score=c.compressed.score,
                    n_items=c_items,
                )
            )
        changed = c.answers_changed()
        if changed is not None:
            interval = proportion_interval(*changed)
            rows.append(
                noise_floor_row(
                    model_key, noise, f"answers_changed_{name}", interval.value, interval=interval
                )
            )
        flips = c.flips()
        if flips is not None:
            rows.append(
                noise_floor_row(
                    model_key, noise, f"flips_{name}", flips.flips_pct, interval=flips.interval
                )
            )
        for metric_name, interval in c.graded().items():
            rows.append(
                noise_floor_row(model_key, noise, metric_name, interval.value, interval=interval)
            )
    for row in rows:
        record_property(ROW_PROPERTY, json.dumps(row))
        print(f"{model_key} noise floor ({noise}): {row['metric']} = {row['value']:.6g}")
    # a self-comparison far from zero means the backend is not deterministic: an error
    assert m["kld_mean"] < 1e-3, f"{model_key}: self-KLD {m['kld_mean']:.3g} at {noise}"
