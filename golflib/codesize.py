"""The training core: the golflib modules reachable by imports from ``golflib.train`` (DESIGN.md).

Run from the package, ``bytes_total = code bytes + artifact bytes`` counts the UTF-8 source bytes of these modules
(the training log says so). Run as a bundled ``train_gpt.py`` (:mod:`golflib.record.bundle` carries exactly
these modules, each a section served by its importer, and sets ``BUNDLED = True``), the code bytes are that file's own bytes, in whichever form runs
(readable, or the self-extracting stub). The same walk is what keeps workbook-only code out of a submission.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PACKAGE = "golflib"
BUNDLED = False  # True inside a bundled train_gpt.py (set by golflib.record.bundle): the code is this one file


def _module_file(mod: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(mod)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return None
    return Path(spec.origin)


def _imports_of(path: Path, modname: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                package = modname if path.name == "__init__.py" else modname.rpartition(".")[0]
                target = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            found.add(target)
            for a in node.names:  # `from golflib.data import shards` imports a submodule
                if _module_file(f"{target}.{a.name}") is not None:
                    found.add(f"{target}.{a.name}")
    return found


def core_modules(root: str = "golflib.train", exclude: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Sorted module names reachable from ``root`` by static (AST) imports, including package ``__init__``s; the
    walk does not enter the modules in ``exclude`` (a bundle's left-out optional modules, :mod:`golflib.seams`)."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        mod = stack.pop()
        if mod in seen or mod in exclude:
            continue
        path = _module_file(mod)
        if path is None:
            continue
        seen.add(mod)
        parts = mod.split(".")
        stack.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        stack.extend(_imports_of(path, mod))
    return sorted(seen)


def core_files(root: str = "golflib.train") -> list[Path]:
    """Source files of the training core (in a bundle: the bundle file itself)."""
    if BUNDLED:
        return [Path(__file__)]
    return [p for p in (_module_file(m) for m in core_modules(root)) if p is not None]


def core_source(root: str = "golflib.train") -> str:
    """Concatenated source of the training core, each file preceded by a ``# ==== <module> ====`` line (in a
    bundle: the bundle file's text, as submitted)."""
    if BUNDLED:
        return Path(__file__).read_text(encoding="utf-8")
    chunks = []
    for mod in core_modules(root):
        path = _module_file(mod)
        if path is not None:
            chunks.append(f"# ==== {mod} ====\n{path.read_text(encoding='utf-8')}")
    return "\n".join(chunks)


def code_bytes(root: str = "golflib.train") -> int:
    """UTF-8 bytes of the training-core sources (sum over files, headers excluded); in a bundle, the bytes of the
    bundle file (what counts toward the 16,000,000-byte limit)."""
    if BUNDLED:
        return len(Path(__file__).read_bytes())
    return sum(len(p.read_text(encoding="utf-8").encode("utf-8")) for p in core_files(root))


def code_bytes_source(root: str = "golflib.train") -> str:
    """What :func:`code_bytes` counted, for the log and ``result.json``."""
    if BUNDLED:
        return f"{Path(__file__).name}: this single bundled file"
    return f"training-core module sources, {len(core_files(root))} files (not a bundled train_gpt.py)"
