"""Library facades for golflib's packages: ``from golflib.quant import export_mixed`` without importing every
submodule of the package (PEP 562 module ``__getattr__``).

A package ``__init__`` lists its public names by defining module and calls :func:`lazy_exports`; a name is imported
from its module on first use, so ``import golflib.quant`` stays cheap and optional modules (GPTQ, LQER, the n-gram
mixer...) load only when asked for. The training core never imports through a facade (the bundler checks it and
drops facades from a bundled ``train_gpt.py``, :mod:`golflib.record.bundle`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, tuple[str, ...]]
                 ) -> tuple[list[str], Callable[[str], object], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package`` (its ``__name__``) from ``{module: (name, ...)}``,
    modules relative to the package (``"export"`` for ``golflib.quant.export``). Raises ``ValueError`` when a name
    is listed under two modules; the returned ``__getattr__`` raises ``AttributeError`` naming the package for an
    unknown name."""
    where: dict[str, str] = {}
    for module, names in exports.items():
        for name in names:
            if name in where:
                raise ValueError(f"{package}: {name} listed under both {where[name]} and {module}")
            where[name] = module

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:  # the exports and what the package already binds (submodules once imported...)
        mod = sys.modules.get(package)
        return sorted(set(where) | (set(vars(mod)) if mod is not None else set()))

    return sorted(where), __getattr__, __dir__
