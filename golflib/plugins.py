"""Plugins: a competitor's own protocols, mixers and model classes, loaded by name from ``EVAL_PLUGINS``.

golflib's public extension points are three registries — :func:`golflib.eval.protocols.register_protocol`
(``custom/<name>`` scoring protocols, scored when ``EVAL_PROTOCOLS`` names them), :func:`golflib.eval.ngram.
register_mixer` (``NGRAM_MIXER``: the hook the n-gram protocols call on every scored batch) and
:func:`golflib.model.registry.register_model_class` (``MODEL_CLASS``). A plugin is a Python module (a dotted name
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
