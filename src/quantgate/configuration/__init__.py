"""What the user writes, validated: the registry (models, compressions, benchmarks), thresholds,
backend settings, lm-eval's task index, the metric catalogue."""
