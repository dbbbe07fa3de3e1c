"""transformers, in process: a checkpoint folder (or a GGUF turned into one), on CPU or GPU,
optionally quantized as it loads (bitsandbytes, optimum-quanto)."""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from quantgate.artifacts.store import Artifact
from quantgate.backends.base import Backend
from quantgate.configuration.backend_settings import BackendSettings
from quantgate.errors import ArtifactError, ConfigError, EvaluationError
from quantgate.night.machine import available_cores

#: a checkpoint's quantization_config.quant_method -> the package transformers needs to load it
_CHECKPOINT_LIBRARIES = {
    "compressed-tensors": "compressed_tensors",
    # transformers >= 5 runs AWQ checkpoints on gptqmodel's kernels (AutoAWQ is archived)
    "awq": "gptqmodel",
    "gptq": "gptqmodel",
    "vptq": "vptq",
}


def _quant_method(artifact: Artifact) -> str | None:
    import json

    config = artifact.path / "config.json"
    if not config.is_file():
        return None
    method = json.loads(config.read_text()).get("quantization_config", {}).get("quant_method")
    return None if method is None else str(method)


def _check_checkpoint_library(artifact: Artifact) -> None:
    """A quantized checkpoint whose library is missing fails here, in one line, rather than
    deep in transformers' loader."""
    import importlib.util

    method = _quant_method(artifact)
    config = artifact.path / "config.json"
    package = _CHECKPOINT_LIBRARIES.get(str(method))
    if package is not None and importlib.util.find_spec(package) is None:
        hint = (
            "pip install -e '.[hf]'"
            if package == "compressed_tensors"
            else "pip install -c requirements/gpu.lock -e '.[hf,gpu]' (or tox -e gpu)"
        )
        raise ConfigError(
            f"{artifact.label}: {config} is a {method} checkpoint and {package} is not "
            f"installed: {hint}"
        )


#: what the kernel libraries say when they run a quantized checkpoint without their kernels
#: (a pure-torch path: correct numbers, a fraction of the speed, a night that never ends)
_FALLBACK = re.compile(
    r"fall(?:ing|s)? ?back|pure[- ]?(?:torch|python)|slow(?:er)? (?:path|implementation)|"
    r"(?:kernel|extension)s? (?:is |are )?(?:not (?:available|found|compiled|installed)|missing)",
    re.IGNORECASE,
)
_KERNEL_METHODS = ("awq", "gptq", "vptq")


def kernel_fallback(messages: Sequence[str]) -> str | None:
    """The first warning or log line that says a quantized layer runs without its kernel."""
    return next((m for m in messages if _FALLBACK.search(m)), None)


@contextlib.contextmanager
def _captured_messages() -> Iterator[list[str]]:
    """Python warnings and WARNING+ log records raised inside the block, as text (they still
    reach their usual handlers)."""
    messages: list[str] = []

    seen: list[logging.LogRecord] = []  # held, so an id is never reused while we compare

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not any(r is record for r in seen):  # a record reaching both loggers: once
                seen.append(record)
                messages.append(record.getMessage())

    handler = _Collect(logging.WARNING)
    # transformers' loggers do not propagate to the root logger: listen to both
    loggers = [logging.getLogger(), logging.getLogger("transformers")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages += [str(w.message) for w in caught]
        for w in caught:  # still shown as they would have been
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


class TransformersBackend(Backend):
    """AutoModelForCausalLM + AutoTokenizer; greedy decoding; no gradient anywhere."""

    name = "transformers"

    def __init__(self, artifact: Artifact, settings: BackendSettings) -> None:
        super().__init__(artifact, settings)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise ConfigError(
                f"{artifact.label}: the transformers backend needs torch and transformers "
                f"({exc.name} missing): pip install -e '.[dev]'"
            ) from None
        self._torch = torch
        torch.manual_seed(settings.seed)
        if settings.device == "cpu":
            torch.set_num_threads(settings.n_threads or available_cores())
        kw: dict[str, Any] = {"trust_remote_code": settings.trust_remote_code}
        spec = artifact.notes.get("quantization")
        if spec is not None:
            from quantgate.artifacts.hf_checkpoint import quantization_config

            kw["quantization_config"] = quantization_config(spec, artifact.label)
        _check_checkpoint_library(artifact)
        dtype = settings.dtype if settings.dtype == "auto" else getattr(torch, settings.dtype)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(artifact.path, **kw)
            with _captured_messages() as messages:
                self.model = AutoModelForCausalLM.from_pretrained(
                    artifact.path, dtype=dtype, device_map=settings.device, **kw
                ).eval()
        except (OSError, ValueError) as exc:
            raise ArtifactError(
                f"{artifact.label}: transformers could not load {artifact.path}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        self.device = settings.device
        method = _quant_method(artifact)
        said = kernel_fallback(messages) if method in _KERNEL_METHODS else None
        if settings.device != "cpu" and said is not None:
            raise EvaluationError(
                f"{artifact.label}: the {method} checkpoint loaded without its GPU kernel "
                f"(it said: {said.strip().splitlines()[0][:160]}); its speed would be a "
                "pure-torch path's: install the kernels (tox -e gpu) and check the CUDA build"
            )

    # -- facts ---------------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def bos_token_id(self) -> int | None:
        ids = self.tokenizer("a", add_special_tokens=True).input_ids
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None and ids and ids[0] == bos else None

    def memory_bytes(self) -> int:
        """Bytes of the loaded weights as they are stored: the state dict's tensors, tied ones
        once. (transformers' get_memory_footprint counts optimum-quanto's int8 weights at their
        float size; the state dict holds their int8 data and scales.)"""
        seen: set[int] = set()
        total = 0
        for tensor in self.model.state_dict().values():
            if tensor.data_ptr() in seen:
                continue
            seen.add(tensor.data_ptr())
            total += tensor.numel() * tensor.element_size()
        return total

    def weight_sparsity(self) -> dict[str, float] | None:
        """Over every ``nn.Linear`` but the output head, as loaded (a compressed-tensors
        checkpoint is decompressed; bitsandbytes int8 keeps its zeros at zero)."""
        from quantgate.evaluation.sparsity import sparsity_of

        torch = self._torch
        head = self.model.get_output_embeddings()

        def matrices() -> Iterator[Any]:
            for module in self.model.modules():
                if not isinstance(module, torch.nn.Linear) or module is head:
                    continue
                # a compressed-tensors int4 layer keeps only ``weight_packed``, a quanto one a
                # quantized tensor subclass: neither is the [out, in] matrix of values, both
                # are left out (float8, below, is widened: it has no CPU comparison kernel).
                # compressed-tensors decompresses packed layers on the model's first forward
                # (a float ``weight`` appears, ``weight_shape`` stays): still left out, so the
                # row does not depend on whether a gate ran the model before (it did: 14.7 %
                # zeros for GPTQ int4 g64 after a forward, no row before)
                if hasattr(module, "weight_packed") or hasattr(module, "weight_shape"):
                    continue
                w = getattr(module, "weight", None)
                plain = type(w).__name__ in ("Tensor", "Parameter", "Int8Params")
                if not plain or w.dim() != 2:
                    continue
                yield w.detach().float() if w.element_size() == 1 and w.is_floating_point() else w

        with torch.no_grad():
            return sparsity_of(matrices())

    # -- tokens --------------------------------------------------------------------------------
    @classmethod
    def peak_device_bytes(cls) -> int | None:
        # torch's peak reserved memory: what its allocator held from the driver
        import torch

        return int(torch.cuda.max_memory_reserved())

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special).input_ids)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True)

    def _ids(self, tokens: Sequence[int]):  # -> torch.Tensor
        return self._torch.tensor([list(tokens)], dtype=self._torch.long, device=self.device)

    # -- scoring -------------------------------------------------------------------------------
    def logits(self, tokens: Sequence[int], start: int = 0) -> np.ndarray:
        if len(tokens) > self.settings.n_ctx:
            raise ValueError(f"{len(tokens)} tokens do not fit n_ctx={self.settings.n_ctx}")
        with self._torch.no_grad():
            out = self.model(self._ids(tokens), use_cache=False).logits[0, start:]
        rows = out.float().cpu().numpy()
        if not np.isfinite(rows).all():
            raise EvaluationError(f"{self.artifact.label}: NaN/inf logits")
        return rows

    def generate(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        stop_ids: Sequence[int] = (),
        stop_text: Sequence[str] = (),
    ) -> list[int]:
        eos = [t for t in (self.tokenizer.eos_token_id, *stop_ids) if t is not None]
        with self._torch.no_grad():
            out = self.model.generate(
                self._ids(prompt),
                attention_mask=self._torch.ones(1, len(prompt), dtype=self._torch.long),
                max_new_tokens=max_new_tokens,
                do_sample=False,  # greedy: temperature 0, top_k 1
                eos_token_id=eos or None,
                pad_token_id=eos[0] if eos else 0,
                stop_strings=[s for s in stop_text if s] or None,
                tokenizer=self.tokenizer,
            )
        new = out[0, len(prompt) :].tolist()
        while new and new[-1] in eos:
            new.pop()
        return new

    # -- speed (llama-bench's pp and tg) -------------------------------------------------------
    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        """torch's CPU threads at the timing count while a timed section runs (it runs alone:
        quantgate.quiet), then back to the evaluation count."""
        torch = self._torch
        before = torch.get_num_threads()
        if self.settings.device == "cpu" and self.timing_threads:
            torch.set_num_threads(self.timing_threads)
        try:
            with torch.no_grad():
                yield
            if self.settings.device != "cpu":
                # CUDA kernels run asynchronously: without this the caller's clock reads the
                # time to launch them, not to run them
                torch.cuda.synchronize()
        finally:
            torch.set_num_threads(before)

    def process_prompt(self, tokens: Sequence[int]) -> None:
        with self._timed():
            self.model(self._ids(tokens), use_cache=True, logits_to_keep=1)

    def decode_one_by_one(self, tokens: Sequence[int]) -> None:
        past = None
        with self._timed():
            for token in tokens:
                out = self.model(
                    self._ids([token]), past_key_values=past, use_cache=True, logits_to_keep=1
                )
                past = out.past_key_values

    # -- lm-eval -------------------------------------------------------------------------------
    @property
    def lm_eval_batch_size(self) -> int | str:
        """On a GPU, lm-eval finds the largest batch that fits ("auto"; IFEval alone is over
        an hour per 8B model at batch 1); on the CPU one request at a time (batching pads, and
        the padded arithmetic is what the CPU tier's agreement tests pin down)."""
        return 1 if self.settings.device == "cpu" else "auto"

    def lm_eval_model(self) -> Any:
        """lm-eval's own ``hf`` model around the loaded model and tokenizer."""
        from lm_eval.models.huggingface import HFLM

        return HFLM(
            pretrained=self.model,
            tokenizer=self.tokenizer,
            batch_size=self.lm_eval_batch_size,
            max_length=self.settings.n_ctx,
            device=self.device,
        )

    def close(self) -> None:
        self.__dict__.pop("model", None)
