"""Export a trained model to an artifact and load it back from disk (SPEC §2.8, §3.B).

``export_int8(model, path, cfg)`` quantizes the state dict with the baseline int8 rules and writes the pickle-free
container; ``export_mixed(state_dict, path, cfg, hessians)`` writes the records' mixed-precision format (int-k per
class, SDClip, GPTQ, LQER, optional pruning to a byte target) with ``MIXED_CODEC``; ``load_artifact_model(path,
model_cfg)`` builds a *fresh* GPT and loads the dequantized weights of either, so the round-trip score is computed
from the bytes on disk, not from memory.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch

from golflib.config import Config
from golflib.settings.base import ConfigError
from golflib.settings.model import ModelConfig
from golflib.settings.quant import QuantConfig
from golflib.model.gpt import GPT
from golflib.model.registry import build_model, meta_model
from golflib.quant.artifact import ArtifactError, encode_artifact, read_artifact, write_artifact
from golflib.quant.int8 import QuantizedState, dequantize, payload_bytes, quantize_int8
from golflib.quant.mixed import quantize_mixed
from golflib.quant.prune import prune_oneshot, prune_to_target


@dataclass(frozen=True)
class ExportInfo:
    """Sizes of an export: ``artifact_bytes`` (file size), ``payload_bytes`` (storage tensors before the codec),
    ``raw_bytes`` (the fp32/bf16 state dict), the ``scheme`` tag and ``codec``."""

    path: str
    artifact_bytes: int
    payload_bytes: int
    raw_bytes: int
    scheme: str
    codec: str


def export_int8(state_dict: dict[str, torch.Tensor], path: str | os.PathLike, cfg: QuantConfig,
                model_cfg: ModelConfig | None = None) -> ExportInfo:
    """Quantize ``state_dict`` (int8 per-row) and write the artifact with ``cfg.artifact_codec``. With ``model_cfg``
    the architecture is stored in the metadata, making the artifact loadable on its own."""
    qs = quantize_int8(state_dict, cfg)
    if model_cfg is not None:
        qs.meta["model"] = dataclasses.asdict(model_cfg)
    n = write_artifact(path, qs, cfg.artifact_codec)
    raw = sum(t.numel() * t.element_size() for t in state_dict.values())
    return ExportInfo(str(path), n, payload_bytes(qs), raw, qs.meta["scheme"], cfg.artifact_codec)


def mixed_state(state_dict: dict[str, torch.Tensor], cfg: QuantConfig, model_cfg: ModelConfig | None = None,
                hessians: dict[str, torch.Tensor] | None = None, *, code_bytes: int = 0, log=None) -> \
        tuple[QuantizedState, dict]:
    """The mixed artifact's quantized state, in memory: :func:`golflib.quant.mixed.quantize_mixed`, the
    architecture in the metadata, and with ``PRUNE_TARGET_BYTES`` > 0 ±1 codes pruned so that ``artifact +
    code_bytes`` is strictly under that many decimal bytes, measured with ``cfg.mixed_codec``:
    ``PRUNE_RULE=search`` the fewest codes that fit (:func:`golflib.quant.prune.prune_to_target`), ``oneshot``
    #1487's ``8 × excess`` codes (:func:`golflib.quant.prune.prune_oneshot`). Returns the state and a dict of extras
    (``{"prune": {...}}`` when pruning ran)."""
    qs = quantize_mixed(state_dict, cfg, hessians, log=log)
    if model_cfg is not None:
        qs.meta["model"] = dataclasses.asdict(model_cfg)
    extras: dict = {}
    if cfg.prune_target_bytes > 0:
        prune = prune_oneshot if cfg.prune_rule == "oneshot" else prune_to_target
        qs, extras["prune"] = prune(qs, lambda s: len(encode_artifact(s, cfg.mixed_codec)),
                                    cfg.prune_target_bytes - code_bytes)
        if log is not None:
            p = extras["prune"]
            after = p.get("bytes_after", "unmeasured")
            log(f"quant:prune rule:{p['rule']} target_bytes:{cfg.prune_target_bytes} (artifact < "
                f"{p['target_bytes']}) pruned:{p['pruned']}/{p['candidates']} bytes:{p['bytes_before']}->{after}")
    return qs, extras


def export_mixed(state_dict: dict[str, torch.Tensor], path: str | os.PathLike, cfg: QuantConfig,
                 model_cfg: ModelConfig | None = None, hessians: dict[str, torch.Tensor] | None = None, *,
                 code_bytes: int = 0, log=None) -> tuple[ExportInfo, dict]:
    """:func:`mixed_state` written to ``path`` with ``cfg.mixed_codec``. Returns the :class:`ExportInfo` and the
    extras of :func:`mixed_state`."""
    qs, extras = mixed_state(state_dict, cfg, model_cfg, hessians, code_bytes=code_bytes, log=log)
    n = write_artifact(path, qs, cfg.mixed_codec)
    raw = sum(t.numel() * t.element_size() for t in state_dict.values())
    return ExportInfo(str(path), n, payload_bytes(qs), raw, qs.meta["scheme"], cfg.mixed_codec), extras


def check_model_shapes(model_cfg: ModelConfig, tensors_meta: dict, source: str) -> None:
    """Refuse, before the model is allocated, an architecture whose parameters are not exactly the tensors the
    artifact declares (names and shapes): the model is built on the ``meta`` device (no memory), so a stored config
    claiming a model larger than the artifact can hold costs nothing. Raises :class:`ArtifactError` naming the
    first differing tensors."""
    try:
        shapes = {k: list(v.shape) for k, v in meta_model(model_cfg).state_dict().items()}
    except ConfigError as e:
        raise ArtifactError(f"{source}: {e}") from None
    except Exception as e:  # noqa: BLE001 - whatever the class raises, it is not loaded
        raise ArtifactError(f"{source}: MODEL_CLASS={model_cfg.model_class!r} cannot be built on the meta device to "
                            f"check its size before allocating it ({type(e).__name__}: {e}); see docs/EXTENDING.md") \
            from None
    declared = {k: list(e["shape"]) for k, e in tensors_meta.items()}
    if shapes != declared:
        missing, extra = sorted(set(shapes) - set(declared)), sorted(set(declared) - set(shapes))
        wrong = [f"{k} {declared[k]} vs {shapes[k]}" for k in shapes if k in declared and shapes[k] != declared[k]]
        n = sum(math.prod(s) for s in shapes.values())
        raise ArtifactError(f"{source}: the model config ({n:,} parameters) does not match the tensors the artifact "
                            f"declares: missing {missing[:4]}, unexpected {extra[:4]}, shapes (declared vs model) "
                            f"{wrong[:4]}")


def load_artifact_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an artifact from disk and return the dequantized float state dict."""
    return dequantize(read_artifact(path))


def load_artifact_model(path: str | os.PathLike, model_cfg: ModelConfig | None = None,
                        device: torch.device | str = "cpu") -> GPT:
    """A fresh model of class ``MODEL_CLASS`` (:func:`golflib.model.registry.build_model`; :class:`GPT` by default)
    with weights loaded (strict) from the artifact at ``path``; the architecture is ``model_cfg`` or, when None, the
    one stored in the artifact.

    Raises :class:`~golflib.quant.artifact.ArtifactError` for a foreign file or an artifact without a stored
    architecture, and ``RuntimeError`` when the weights do not match the architecture."""
    qs = read_artifact(path)
    if model_cfg is None:
        if not isinstance(qs.meta.get("model"), dict):
            raise ArtifactError(f"{path}: no model config stored in the artifact; pass one explicitly")
        try:
            model_cfg = Config().replace(qs.meta["model"], source=f"artifact {path}").model
        except ConfigError as e:
            raise ArtifactError(f"{path}: stored model config: {e}") from None
    check_model_shapes(model_cfg, qs.meta["tensors"], str(path))
    model = build_model(model_cfg)
    sd = dequantize(qs)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise RuntimeError(f"{path}: artifact does not match the model config ({e})") from None
    return model.to(device)
