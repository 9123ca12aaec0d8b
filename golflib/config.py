"""Typed, frozen run configuration: :class:`Config` assembles the groups of :mod:`golflib.settings` (data, model,
optim, train, eval, quant, ttt, ngram — one module per concern) and resolves them from presets, the environment
and overrides.

Every field is a hyperparameter with an environment-variable name equal to its upper-cased field name, the
challenge's own names where one exists (``NUM_LAYERS``, ``MODEL_DIM``, ``TRAIN_SEQ_LEN``, ``MAX_WALLCLOCK_SECONDS``,
... see SPEC §2.1). Names are unique across groups, so a flat ``{ENV_NAME: value}`` view is lossless.

Resolution order used by :func:`resolve` (later wins): field defaults → preset overrides → environment variables →
explicit overrides. An environment variable that looks like one of ours (a field's prefix such as ``TTT_`` or
``MUON_``, or a near-miss of a field name such as ``ITERATION``) but matches no field is an error, not a silent no-op
(:func:`looks_like_ours`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import os
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from golflib.errors import parse_json
from golflib.settings.base import ConfigError
from golflib.settings.model import ModelConfig
from golflib.settings.quant import QuantConfig
from golflib.settings.scoring import NgramConfig, TTTConfig
from golflib.settings.training import DataConfig, EvalConfig, OptimConfig, TrainConfig


GROUPS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "quant": QuantConfig,
    "ttt": TTTConfig,
    "ngram": NgramConfig,
}

# The typo guard (issue 16): an environment variable that matches no field is refused when it looks like one of ours —
# it starts with a field's prefix (the first word, or the first two when the first is common in other tools' variables,
# like MAX_JOBS or USE_CUDA), or it is a near-miss of a field name (one insertion, deletion, substitution or adjacent
# swap away, or difflib ratio >= TYPO_RATIO). Both are derived from the fields themselves, so a new field is guarded
# without a list to update; tests/test_input_safety.py checks every field's typos and other tools' variables.
GENERIC_FIRST_WORDS = frozenset({
    "ALLOW", "ATTENTION", "COUNTED", "DATA", "DEVICE", "DISABLE", "ENABLE", "FLASH", "GLOBAL", "GRAD", "HEAD",
    "HESSIAN", "INIT", "KEEP", "LEGACY", "LOADER", "MAX", "MIN", "NUM", "PRECISION", "RUN", "SEED", "TOKENIZER",
    "USE", "VALUE",
})
OWN_PREFIXES = ("GOLF_",)  # golflib's own namespace
NOT_CONFIG = frozenset({"GOLF_RECORDS_DIR"})  # golflib variables that are not config fields (tests' records folder)
TYPO_RATIO = 0.85


@functools.cache
def typo_prefixes() -> tuple[str, ...]:
    """Prefixes that mark an environment variable as golflib's (see :data:`GENERIC_FIRST_WORDS`)."""
    out = set(OWN_PREFIXES)
    for name in env_names():
        words = name.split("_")
        k = 2 if words[0] in GENERIC_FIRST_WORDS else 1
        if len(words) > k:
            out.add("_".join(words[:k]) + "_")
    return tuple(sorted(out))


def _one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by one insertion, deletion, substitution or swap of adjacent letters."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long_[k]), len(short))
    return short[i:] == long_[i + 1:]


def looks_like_ours(key: str) -> bool:
    """True when ``key`` (not a field name) starts with a field's prefix, is one edit (Damerau) from a field name of
    at least 4 letters, or a near-miss by difflib ratio (module comment)."""
    if key in NOT_CONFIG:
        return False
    if key.startswith(typo_prefixes()):
        return True
    if key != key.upper():
        return False
    names = env_names()
    return any(len(n) >= 4 and _one_edit(key, n) for n in names) or \
        bool(difflib.get_close_matches(key, names, n=1, cutoff=TYPO_RATIO))


def _coerce(name: str, typ: Any, raw: Any) -> Any:
    """Parse ``raw`` (a string from the environment, or a Python value) into the field type."""
    origin = typing.get_origin(typ)
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, (int, float)) and raw in (0, 1):
                return bool(raw)
            s = str(raw).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(s)
        if typ is int:
            if isinstance(raw, bool):
                return int(raw)
            if isinstance(raw, float):
                if raw != int(raw):
                    raise ValueError(raw)
                return int(raw)
            return int(str(raw).strip())
        if typ is float:
            val = float(str(raw).strip()) if not isinstance(raw, (int, float)) else float(raw)
            if not math.isfinite(val):
                raise ConfigError(f"{name.upper()}={raw!r}: expected a finite number")
            return val
        if typ is str:
            if isinstance(raw, (dict, list, tuple)) or raw is None:
                raise ValueError(raw)
            return str(raw)
        if origin is tuple:
            (elem, *_rest) = typing.get_args(typ)
            if isinstance(raw, str):
                parts = [p for p in raw.replace(" ", "").split(",") if p]
            elif isinstance(raw, (list, tuple)):
                parts = list(raw)
            else:
                raise ValueError(raw)
            return tuple(_coerce(name, elem, p) for p in parts)
    except ConfigError:
        raise
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name.upper()}={raw!r}: expected {getattr(typ, '__name__', typ)}") from None
    raise ConfigError(f"{name.upper()}: unsupported field type {typ}")


def _field_index() -> dict[str, tuple[str, dataclasses.Field]]:
    index: dict[str, tuple[str, dataclasses.Field]] = {}
    for group, cls in GROUPS.items():
        for f in fields(cls):
            if f.name in index:
                raise RuntimeError(f"config field {f.name} is defined in two groups")  # programming error
            index[f.name] = (group, f)
    return index


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration: one frozen dataclass per group.

    Access fields as ``cfg.model.num_layers``; :meth:`flat` gives ``{"NUM_LAYERS": 9, ...}``.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    ttt: TTTConfig = field(default_factory=TTTConfig)
    ngram: NgramConfig = field(default_factory=NgramConfig)

    # ---- views -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested ``{group: {field: value}}`` (JSON-serializable)."""
        return {g: dataclasses.asdict(getattr(self, g)) for g in GROUPS}

    def flat(self) -> dict[str, Any]:
        """Flat ``{ENV_NAME: value}`` view."""
        return {k.upper(): v for g in GROUPS for k, v in dataclasses.asdict(getattr(self, g)).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    # ---- construction ------------------------------------------------------------------------------------------
    def replace(self, overrides: Mapping[str, Any] | None = None, *, source: str = "override") -> "Config":
        """Return a copy with ``overrides`` applied.

        Keys are field names or env-var names, case-insensitive (``"num_layers"`` or ``"NUM_LAYERS"``); values are
        Python values or strings (parsed with the field's type). Raises :class:`ConfigError` naming the key for an
        unknown field or an invalid value, with close matches suggested.
        """
        if not overrides:
            return self
        index = _field_index()
        per_group: dict[str, dict[str, Any]] = {}
        for key, raw in overrides.items():
            name = str(key).strip().lower()
            if name not in index:
                close = difflib.get_close_matches(name.upper(), [n.upper() for n in index], n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(f"unknown config field {str(key)!r} (from {source}){hint}")
            group, f = index[name]
            hints = typing.get_type_hints(GROUPS[group])
            per_group.setdefault(group, {})[name] = _coerce(name, hints[name], raw)
        kwargs = {}
        for group, vals in per_group.items():
            kwargs[group] = dataclasses.replace(getattr(self, group), **vals)
        return dataclasses.replace(self, **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        """Inverse of :meth:`to_dict` (also accepts a flat ``{ENV_NAME: value}`` mapping)."""
        flat: dict[str, Any] = {}
        for key, val in d.items():
            if key in GROUPS and isinstance(val, Mapping):
                flat.update(val)
            else:
                flat[key] = val
        return cls().replace(flat, source="config file")

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "Config":
        """Load a ``config.json`` written by a run (extra top-level keys such as ``meta`` are ignored)."""
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: no such config file")
        with open(path, "rb") as fh:
            raw = parse_json(fh.read(), str(path), ConfigError)
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a JSON object of config groups")
        extra = sorted(set(raw) - set(GROUPS) - {"config", "meta"})
        if extra:
            raise ConfigError(f"{path}: unknown top-level key(s) {extra[:5]}; expected the groups {list(GROUPS)} "
                              "(or 'config' and 'meta')")
        if "config" in raw and isinstance(raw["config"], Mapping):
            raw = raw["config"]
        if not all(isinstance(raw[g], Mapping) for g in GROUPS if g in raw):
            raise ConfigError(f"{path}: every config group must be a JSON object")
        return cls.from_dict({k: v for k, v in raw.items() if k in GROUPS})

    def with_env(self, environ: Mapping[str, str] | None = None) -> "Config":
        """Apply environment variables named like fields; refuse unknown ones that look like ours."""
        environ = os.environ if environ is None else environ
        index = _field_index()
        found: dict[str, str] = {}
        unknown: list[str] = []
        for key, val in environ.items():
            if key.lower() in index and key == key.upper():
                found[key] = val
            elif looks_like_ours(key):
                unknown.append(key)
        if unknown:
            msgs = []
            for key in sorted(unknown):
                close = difflib.get_close_matches(key, [n.upper() for n in index], n=2)
                msgs.append(key + (f" (did you mean {', '.join(close)}?)" if close else ""))
            raise ConfigError("environment variables match no golflib config field: " + "; ".join(msgs))
        return self.replace(found, source="environment")


def env_names() -> list[str]:
    """All config env-var names, in group order."""
    return [f.name.upper() for cls in GROUPS.values() for f in fields(cls)]
