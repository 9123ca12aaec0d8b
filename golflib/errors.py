"""The error types of bad input, one per failure class, and the bounded JSON reader every input file goes through.

Every class derives from :class:`GolfError` (a ``ValueError``); each message names the file, the field or the
tensor and what was expected. The ``golf`` command prints a :class:`GolfError` as ``golf: error: <message>`` and
exits with status 2 (docs/LOG.md, issue 16). The classes, by what was wrong:

=================================================  =================================================================
:class:`ConfigError`                               a config field, override, environment variable or config.json
:class:`golflib.quant.limits.ArtifactError`        an artifact file (container, header, sections, tensors, values)
:class:`golflib.quant.codecs.CodecError`           a codec name or a compressed payload
:class:`golflib.data.shards.ShardError`            a token shard
:class:`TokenizerError`                            a tokenizer vs its manifest entry or the shards it scores
:class:`ManifestError`                             a data ``manifest.json``
:class:`RunDirError`                               an output directory that already holds files
:class:`BudgetError`                               a byte limit, code-byte count or pruning target
:class:`golflib.runresult.RunResultError`          a ``result.json``
:class:`golflib.workbook.notebook.ParamError`      a notebook parameter
:class:`golflib.data.caseops.CaseOpsError`         text the CaseOps transform cannot encode or decode
:class:`golflib.data.fineweb.StaleManifestError`   a local manifest from another hub repository
=================================================  =================================================================

This module imports nothing of golflib, so every layer (data, quant, config) may use it.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 64  # nesting levels any golflib JSON input may have (config.json, manifests, artifact headers)


class GolfError(ValueError):
    """Bad input: the message names the file, field or tensor and what was expected."""


class ConfigError(GolfError):
    """A config field, override, environment variable or config file is unknown or out of range (the message starts
    with the field's environment-variable name, or the file). Re-exported by :mod:`golflib.settings.base`."""


class TokenizerError(GolfError):
    """A tokenizer that does not match its manifest entry (name, vocab size, SHA-256 of the ``.model``) or the
    token ids of the shards it is asked to score."""


class ManifestError(GolfError):
    """A ``manifest.json`` that is not the expected JSON object."""


class RunDirError(GolfError):
    """An output directory that already holds files a run, seed set, record or bundle would write: nothing is ever
    overwritten."""


class BudgetError(GolfError):
    """A byte limit above the challenge's 16,000,000, a negative code-byte count, or a pruning target that cannot
    satisfy the strict limit."""


def _prescan_depth(text: str, limit: int) -> int:
    """Bracket depth of JSON text outside strings, without parsing (so a deeply nested document never reaches the
    recursive parser)."""
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(data: str | bytes, source: str, error: type[GolfError] = GolfError, *,
               max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse untrusted JSON from ``source`` (a file name, or ``"<file> header"``).

    Raises ``error`` naming ``source`` when the text is not UTF-8, not JSON, nested deeper than ``max_depth``
    (checked on the text before parsing, so no ``RecursionError``), or holds ``NaN``/``Infinity`` literals."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{source}: not UTF-8 text ({e})") from None
    if _prescan_depth(data, max_depth) > max_depth:
        raise error(f"{source}: JSON nested deeper than {max_depth} levels")

    def _no_constant(name: str):
        raise error(f"{source}: JSON holds the non-finite literal {name}")

    try:
        return json.loads(data, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise error(f"{source}: not valid JSON ({e})") from None
    except RecursionError:  # not reachable after the pre-scan; kept so no input can surface a RecursionError
        raise error(f"{source}: JSON nested too deeply") from None
