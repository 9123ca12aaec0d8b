"""The error type and field check shared by every group of the run configuration (:mod:`golflib.config`)."""

from __future__ import annotations

from typing import Any

from golflib.errors import ConfigError  # noqa: F401  (re-exported: every settings group raises it)

CHALLENGE_LIMIT_BYTES = 16_000_000  # code + compressed model, decimal bytes, strict (SPEC §0)


def check_field(cond: bool, name: str, msg: str, value: Any) -> None:
    """Raise :class:`ConfigError` ``"<FIELD>=<value>: <msg>"`` unless ``cond``."""
    if not cond:
        raise ConfigError(f"{name.upper()}={value!r}: {msg}")

