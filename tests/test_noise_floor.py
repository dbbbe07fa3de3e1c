"""Noise floor: the baseline against itself, loaded a second time with a quarter of the batch
size (same weights, a different split of the matrix products). What it measures (self-KLD,
self-PPL change, self-flips per benchmark) is what no compression can be blamed for; the
reports put each threshold in units of it. Not gated; not in -m smoke (it costs a second
baseline evaluation):

    pytest tests/test_noise_floor.py --model smollm2
"""

import json

import pytest

from quantgate.report import ROW_PROPERTY, noise_floor_row


@pytest.mark.noise_floor
def test_noise_floor(model_key, quantgate, record_property):
    quality, comparisons = quantgate.noise_floor(model_key)
    noise = f"n_batch {quantgate.noise_settings(model_key).n_batch}"
    m, iv = quality.metrics, quality.intervals
    rows = [
        noise_floor_row(model_key, noise, "kld_mean", m["kld_mean"]),
        noise_floor_row(model_key, noise, "top1_agreement_pct", m["top1_agreement_pct"]),
        noise_floor_row(
            model_key,
            noise,
            "ppl_increase_pct",
            m["ppl_increase_pct"],
            ppl=quality.ppl,
            ppl_baseline=quality.ppl_baseline,
            ci_low=iv["ppl_increase_pct"].low,
            ci_high=iv["ppl_increase_pct"].high,
        ),
    ]
    for name, c in comparisons.items():
        rows.append(
            noise_floor_row(
                model_key,
                noise,
                f"D_{name}",
                c.d,
                score=c.compressed.score,
                n_items=c.compressed.n_items,
            )
        )
        flips = c.flips()
        if flips is not None:
            rows.append(noise_floor_row(model_key, noise, f"flips_{name}", flips.flips_pct))
    for row in rows:
        record_property(ROW_PROPERTY, json.dumps(row))
        print(f"{model_key} noise floor ({noise}): {row['metric']} = {row['value']:.6g}")
    # a self-comparison far from zero means the backend is not deterministic: an error
    assert m["kld_mean"] < 1e-3, f"{model_key}: self-KLD {m['kld_mean']:.3g} at {noise}"
