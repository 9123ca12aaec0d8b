"""Plugins: a competitor's own protocols, mixers and model classes, loaded by name from ``EVAL_PLUGINS``.

golflib's public extension points are three registries, filled by the functions here: :func:`register_protocol`
(``custom/<name>`` scoring protocols, scored when ``EVAL_PROTOCOLS`` names them), :func:`register_mixer`
(``NGRAM_MIXER``: the hook the n-gram protocols call on every scored batch) and :func:`register_model_class`
(``MODEL_CLASS``). A plugin is a Python module (a dotted name
importable from ``sys.path``) or a ``.py`` file that calls them when imported. :func:`load_plugins` imports the
plugins of a config before training; :func:`plugin_digests` records each one's file and SHA-256 in ``config.json``
so the perturbation audit (:mod:`golflib.workbook.audit`) can refuse to re-run code that changed since the run.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from golflib.eval.bpb import EvalResult
    from golflib.eval.protocols import Protocol


class PluginError(ImportError):
    """A plugin named in ``EVAL_PLUGINS`` cannot be found or imported (the message names it)."""


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def plugin_file(spec: str) -> Path:
    """The source file of plugin ``spec`` (a ``.py`` path, or a module name located without running it beyond
    its parent packages). Raises :class:`PluginError` when it does not exist."""
    if _is_file(spec):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"EVAL_PLUGINS: plugin file {spec} does not exist")
        return path
    try:
        found = importlib.util.find_spec(spec)
    except (ImportError, ValueError) as e:
        raise PluginError(f"EVAL_PLUGINS: plugin module {spec!r} cannot be located ({e})") from None
    if found is None or not found.origin or not Path(found.origin).is_file():
        raise PluginError(f"EVAL_PLUGINS: plugin module {spec!r} not found on sys.path")
    return Path(found.origin)


def plugin_digests(specs) -> list[dict]:
    """``[{"spec", "file", "sha256"}]`` for every plugin of ``specs`` (nothing is imported)."""
    out = []
    for spec in specs:
        path = plugin_file(spec)
        out.append({"spec": spec, "file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return out


def load_plugins(specs) -> list[dict]:
    """Import every plugin of ``specs`` (module names or ``.py`` files; a file becomes module
    ``golflib_plugin_<stem>``, executed afresh on every call so a re-run registers its current code); returns
    :func:`plugin_digests`. Raises :class:`PluginError` naming the plugin when one cannot be found or raises while
    importing."""
    digests = plugin_digests(specs)
    for spec, d in zip(specs, digests):
        try:
            if _is_file(spec):
                name = "golflib_plugin_" + Path(d["file"]).stem.replace("-", "_")
                mspec = importlib.util.spec_from_file_location(name, d["file"])
                module = importlib.util.module_from_spec(mspec)
                sys.modules[name] = module
                mspec.loader.exec_module(module)
            else:
                importlib.import_module(spec)
        except Exception as e:
            raise PluginError(f"EVAL_PLUGINS: plugin {spec!r} failed to import: {type(e).__name__}: {e}") from e
    return digests


def register_protocol(name: str, run: Callable[..., EvalResult], *, label: str | None = None,
                      window: str = "eval", unit: str = "stream") -> Protocol:
    """Register a scoring protocol written outside golflib (a plugin) in :data:`golflib.eval.protocols.PROTOCOLS` as
    ``custom/<name>``; a run scores it when ``EVAL_PROTOCOLS`` names it, on the artifact every other protocol scores,
    and records it under that score key. ``run(model, tokens, luts, cfg, ctx) -> EvalResult`` as every protocol
    (score through :class:`golflib.eval.scorer.Scorer`, which writes each batch to ``ctx.dump`` and records scores
    and updates in the ledger). ``label``: its log label (default: the name); ``window``: ``eval``
    (``EVAL_SEQ_LEN``) or ``train`` (``TRAIN_SEQ_LEN``), the length its val stream is truncated at; ``unit``:
    ``stream`` or ``document`` (:class:`Protocol`). Re-registering a name replaces it (a plugin reloaded).
    Returns the :class:`Protocol`. Raises ``ValueError`` for a name that is not a lowercase identifier, an
    unknown window or unit."""
    from golflib.eval.protocols import CUSTOM, PROTOCOLS, UNITS, Protocol, _train_len, eval_window

    short = name.removeprefix(CUSTOM)
    if not short or not all(c.isalnum() or c in "_.-" for c in short) or short != short.lower():
        raise ValueError(f"register_protocol: name {name!r} must be lowercase letters, digits, '_', '.', '-'")
    if window not in ("eval", "train"):
        raise ValueError(f"register_protocol({name!r}): window must be 'eval' or 'train', got {window!r}")
    if unit not in UNITS:
        raise ValueError(f"register_protocol({name!r}): unit must be one of {', '.join(UNITS)}, got {unit!r}")
    key = CUSTOM + short
    proto = Protocol(key, label or short.replace(".", "_").replace("-", "_"), run,
                     eval_window if window == "eval" else _train_len, unit=unit)
    PROTOCOLS[key] = proto
    return proto


def register_mixer(name: str, factory) -> None:
    """Register a mixer factory as ``NGRAM_MIXER=<name>`` in :data:`golflib.eval.ngram.MIXERS`.
    ``factory(ncfg, tokens, vocab_size, bos_id, record=False, device=None)`` returns a hook with
    :class:`golflib.eval.ngram.NgramMixer`'s call signature — ``mixer(positions, logits, targets, ledger, rows=False) -> (nll, rows)``,
    recording its scores and cache updates in ``ledger`` — and a ``summary()`` dict. Raises ``ValueError`` for
    ``builtin`` or a name that is not an identifier."""
    from golflib.eval.ngram import MIXERS

    if name == "builtin" or not name.replace(".", "_").isidentifier():
        raise ValueError(f"register_mixer: name {name!r} must be an identifier other than 'builtin'")
    MIXERS[name] = factory


def register_model_class(name: str, cls: type) -> type:
    """Register ``cls`` as ``MODEL_CLASS=<name>`` in :data:`golflib.model.registry.MODEL_CLASSES`: a subclass of
    :class:`golflib.model.gpt.GPT`, or any ``nn.Module`` built as ``cls(model_cfg)`` with ``logits``, ``token_nll``
    and ``forward``. Returns ``cls``; re-registering a name replaces it. Raises ``ValueError`` for ``gpt``
    (golflib's own) or a name that is not an identifier, ``TypeError`` for a non-class."""
    from golflib.model.registry import MODEL_CLASSES

    if not isinstance(cls, type):
        raise TypeError(f"register_model_class({name!r}): expected a class, got {type(cls).__name__}")
    if name == "gpt" or not name.replace(".", "_").isidentifier():
        raise ValueError(f"register_model_class: name {name!r} must be an identifier other than 'gpt'")
    MODEL_CLASSES[name] = cls
    return cls


def score_protocols(cfg, model, luts, rt, log, tag: str) -> dict:
    """Training integration: score every ``EVAL_PROTOCOLS`` entry, each on a fresh copy of ``model`` (the artifact
    model) over the val stream truncated at its window length, and log its lines under the artifact ``tag``.
    Returns ``{"scores": {"custom/<name>": EvalResult}, "seconds"}``. ``rt``: :class:`golflib.runtime.Runtime`;
    ``log``: a :class:`golflib.runlog.RunLogger`."""
    import copy

    from golflib.data.loader import load_validation_tokens
    from golflib.eval.context import ScoringContext
    from golflib.eval.protocols import get_protocol

    out: dict = {"scores": {}, "seconds": 0.0}
    for name in cfg.eval.eval_protocols:
        proto = get_protocol(name)
        toks = load_validation_tokens(cfg.data.val_glob, proto.seq_len(cfg), cfg.model.vocab_size,
                                      cfg.train.val_max_tokens)
        log.log(f"custom:start protocol:{name} unit:{proto.unit} targets:{toks.numel() - 1}")
        ctx = ScoringContext(device=rt.device, rank=rt.rank, world_size=rt.world_size, log=log.log)
        res = proto.run(copy.deepcopy(model), toks, luts, cfg, ctx)
        for line in proto.log_lines(res, cfg, tag=tag):
            log.log(line)
        out["scores"][name] = res
        out["seconds"] += res.seconds
    return out
