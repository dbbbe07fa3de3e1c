"""The baseline and the variants: fetched (sources), built by each compression method
(compressions/, one module each) with its machinery beside them here (llama_quantizer, imatrix,
block_pruning, llm_compressor_runner and its job), checked and cached (store, cache,
shared_store)."""
