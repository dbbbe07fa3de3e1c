"""The measurers: one per gate (perplexity and KLD, retention, throughput, footprint), each
turning a (model, compression) pair into a ``quantgate.verdicts.measurement.Measurement`` that
carries its provenance, over the models that ``loading`` loads (lazily: a cache hit loads
nothing)."""
