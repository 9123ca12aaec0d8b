"""The compressed, self-extracting ``train_gpt.py`` (SPEC §3.B13).

From #1285 on, records ship ``train_gpt.py`` as a stub that decompresses and executes its own source; from #1530 on
they ship readable source but report the size of a hypothetical minify → compress → base85 wrapper. golflib writes
both files and lets the record say which one was counted (the readable one is always shipped for review).

:func:`minify` works on the AST, so it cannot change what the code does: it drops docstrings and every other bare
string-constant statement, comments (``ast.unparse`` does not keep them), parameter/return annotations of functions
and annotations of local variables (class-level annotations stay: dataclass fields are defined by them), then
re-indents with one space per level (checked to parse back to the same AST), then lets python-minifier shorten
local names. With ``shake`` it also drops
module-level functions and classes nothing refers to (:func:`remove_unused_defs`) and standard-library or golflib
imports nothing uses (:func:`remove_unused_imports`), and :func:`fold_flags` resolves ``if BUNDLED:`` branches
(the flag a bundle sets to True).
:func:`compress_stub` wraps it as ``S = <codec>.decompress(base64.b85decode("...")).decode()`` then
``exec(compile(S, ...))`` with raw LZMA2 (xz preset 9e, no container header) or brotli quality 11 (a bundle's
importer reads its module sections from ``S``, :mod:`golflib.record.boot`); :func:`extract` inverts it.
"""

from __future__ import annotations

import ast
import base64
import io
import lzma
import re
import tokenize
from dataclasses import dataclass

CODECS = ("lzma", "brotli")
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
STUB_NAME = "<train_gpt>"  # filename of the exec'd source in tracebacks


class _Strip(ast.NodeTransformer):
    def __init__(self):
        self.depth_fn = 0

    def generic_visit(self, node):
        super().generic_visit(node)
        for attr in ("body", "orelse", "finalbody"):
            body = getattr(node, attr, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                kept = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                                and isinstance(s.value.value, str))]
                setattr(node, attr, kept or ([] if attr == "orelse" else [ast.Pass()]))
        return node

    def visit_FunctionDef(self, node):
        for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
            a.annotation = None
        for a in (node.args.vararg, node.args.kwarg):
            if a is not None:
                a.annotation = None
        node.returns = None
        self.depth_fn += 1
        self.generic_visit(node)
        self.depth_fn -= 1
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        depth, self.depth_fn = self.depth_fn, 0  # a class body's annotations are fields, even inside a function
        self.generic_visit(node)
        self.depth_fn = depth
        return node

    def visit_AnnAssign(self, node):
        if self.depth_fn == 0:
            return node
        if node.value is None:
            return None  # a bare local annotation does nothing at run time
        return ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)


def _strip_tree(source: str) -> ast.Module:
    tree = _Strip().visit(ast.parse(source))
    return ast.fix_missing_locations(tree)


def _reindent(code: str) -> str:
    """One space per indentation level, no blank lines. Only valid when no string token spans lines (checked)."""
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.STRING and tok.start[0] != tok.end[0]:
            return "\n".join(line for line in code.splitlines() if line.strip()) + "\n"
    out = []
    for line in code.splitlines():
        if not line.strip():
            continue
        stripped = line.lstrip(" ")
        n = len(line) - len(stripped)
        out.append(" " * (n // 4) + stripped)
    return "\n".join(out) + "\n"


_PURE_DECORATORS = ("dataclass", "dataclasses.dataclass", "torch.no_grad", "torch.inference_mode", "lru_cache",
                    "functools.lru_cache", "functools.cache", "staticmethod", "classmethod", "property")


def _pure_decorator(d: ast.expr) -> bool:
    return ast.unparse(d.func if isinstance(d, ast.Call) else d) in _PURE_DECORATORS


def remove_unused_defs(tree: ast.Module, keep: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Drop module-level functions and classes no code refers to (dead code), to a fixed point; returns their
    names. A def is kept when any ``Name`` in the tree loads its name, when its name is in ``keep`` (names other
    modules import from this one), or when a decorator may have side effects (a registry such as
    ``@preset(...)``): only decorators in ``_PURE_DECORATORS`` allow removal. Sound for code that never looks names
    up by string in a module namespace (``getattr(module, name)``, ``globals()[name]``)."""
    removed: list[str] = []
    while True:
        loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} | set(keep)
        dead = [s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and s.name not in loads and all(_pure_decorator(d) for d in s.decorator_list)]
        if not dead:
            return removed
        ids = set(map(id, dead))
        tree.body = [s for s in tree.body if id(s) not in ids]
        removed.extend(s.name for s in dead)


class _Fold(ast.NodeTransformer):
    def __init__(self, flags: dict[str, bool]):
        self.flags = flags

    def _value(self, test: ast.expr) -> bool | None:
        if isinstance(test, ast.Name) and test.id in self.flags:
            return self.flags[test.id]
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            v = self._value(test.operand)
            return None if v is None else not v
        return None

    def visit_If(self, node):
        self.generic_visit(node)
        v = self._value(node.test)
        if v is None:
            return node
        return (node.body if v else node.orelse) or None


def _prune_blocks(tree: ast.AST) -> None:
    """Drop statements after an unconditional return/raise/continue/break; give emptied blocks a ``pass``."""
    for node in ast.walk(tree):
        for attr in ("body", "orelse", "finalbody"):
            body = getattr(node, attr, None)
            if not isinstance(body, list) or (body and not isinstance(body[0], ast.stmt)):
                continue
            for i, st in enumerate(body):
                if isinstance(st, (ast.Return, ast.Raise, ast.Continue, ast.Break)):
                    del body[i + 1:]
                    break
            if not body and (attr == "body" or (attr == "finalbody" and isinstance(node, ast.Try)
                                                  and not node.handlers)):
                body.append(ast.Pass())


def fold_flags(tree: ast.Module, flags: dict[str, bool]) -> None:
    """Replace ``if FLAG:`` / ``if not FLAG:`` by the branch taken, for module-level boolean flags with a known
    value (in a bundle: ``BUNDLED = True``), then drop the code that became unreachable. A flag is either assigned
    exactly once, at module level, to that constant (the module that owns it) or bound only by one module-level
    ``from ... import FLAG`` and never assigned (a module that reads it). Raises ``ValueError`` otherwise (folding
    would change behaviour)."""
    for name, value in flags.items():
        stores = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name
                  and isinstance(n.ctx, (ast.Store, ast.Del))]
        imports = [a for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names
                   if (a.asname or a.name) == name]
        top_imports = [a for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names
                       if (a.asname or a.name) == name and a.asname in (None, name)]
        if not stores and len(imports) == len(top_imports) == 1:
            continue
        assigns = [s for s in tree.body if isinstance(s, (ast.Assign, ast.AnnAssign))
                   and any(isinstance(t, ast.Name) and t.id == name
                           for t in (s.targets if isinstance(s, ast.Assign) else [s.target]))]
        if len(stores) != 1 or len(assigns) != 1 or not isinstance(assigns[0].value, ast.Constant) \
                or assigns[0].value.value is not value:
            raise ValueError(f"flag {name}: expected exactly one module-level `{name} = {value}`")
    _Fold(flags).visit(tree)
    _prune_blocks(tree)
    ast.fix_missing_locations(tree)


def remove_unused_imports(tree: ast.Module, keep: frozenset[str] | set[str] = frozenset(),
                          packages: tuple[str, ...] = ("golflib",)) -> list[str]:
    """Drop module-level imports of standard-library names, and imports (at any depth) of names from
    ``packages`` (the bundle's own modules, which the bundle imports anyway), that nothing loads and no other
    module imports from this one (``keep``); returns the dropped names. Third-party imports stay: importing them
    may have side effects."""
    import sys

    loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} | set(keep)
    removed: list[str] = []

    def bound(a: ast.alias, s: ast.stmt) -> str:
        return a.asname or (a.name.split(".")[0] if isinstance(s, ast.Import) else a.name)

    def prune(body: list[ast.stmt], top: bool) -> None:
        kept = []
        for s in body:
            if isinstance(s, (ast.Import, ast.ImportFrom)) and not (isinstance(s, ast.ImportFrom)
                                                                     and s.module == "__future__"):
                mod = (s.names[0].name if isinstance(s, ast.Import) else s.module or "").split(".")[0]
                level = getattr(s, "level", 0)
                ours = mod in packages and not level
                if (ours or (top and mod in sys.stdlib_module_names and not level)) and s.names[0].name != "*":
                    keep_alias = [a for a in s.names if bound(a, s) in loads]
                    removed.extend(a.name for a in s.names if a not in keep_alias)
                    if not keep_alias:
                        continue
                    s.names = keep_alias
            kept.append(s)
        body[:] = kept

    prune(tree.body, True)
    for node in ast.walk(tree):
        if node is not tree:
            for attr in ("body", "orelse", "finalbody"):
                body = getattr(node, attr, None)
                if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                    prune(body, False)
    _prune_blocks(tree)
    return removed


def minify(source: str, shake: bool = True, flags: dict[str, bool] | None = None,
           rename_locals: bool = True, keep: frozenset[str] | set[str] = frozenset()) -> str:
    """Minified equivalent of ``source`` (module docstring); ``flags`` are folded with :func:`fold_flags` first;
    shaking never drops a name in ``keep`` (names other modules import from this one).
    With ``rename_locals`` the result then goes through python-minifier (local names shortened, statements
    joined; module-level names, attributes, keyword-callable parameters and class-level annotations kept), which
    takes about 5% off the compressed stub. Raises ``ValueError`` if the re-indented source does not parse back to
    the same AST (a bug, never silently accepted)."""
    tree = _strip_tree(source)
    if flags:
        fold_flags(tree, flags)
    if shake:
        remove_unused_defs(tree, keep)
        remove_unused_imports(tree, keep)
    plain = ast.unparse(tree)
    code = _reindent(plain)
    if ast.dump(ast.parse(code)) != ast.dump(ast.parse(plain)):
        raise ValueError("re-indented source does not parse back to the same AST")
    if rename_locals:
        import python_minifier

        code = python_minifier.minify(code, rename_locals=True, rename_globals=False, hoist_literals=False,
                                      remove_literal_statements=True, preserve_shebang=False)
        code = code if code.endswith("\n") else code + "\n"
    return code


def _compress(data: bytes, codec: str) -> bytes:
    if codec == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    if codec == "brotli":
        import brotli

        return brotli.compress(data, quality=11, lgwin=24)
    raise ValueError(f"codec {codec!r}: expected one of {', '.join(CODECS)}")


@dataclass
class Compressed:
    """The self-extracting form: ``stub`` (the file text), ``codec``, ``payload`` (the minified source, bytes) and
    ``compressed_bytes`` (codec output before base85)."""

    stub: str
    codec: str
    payload: bytes
    compressed_bytes: int

    @property
    def stub_bytes(self) -> int:
        return len(self.stub.encode("utf-8"))


def compress_stub(minified: str, codec: str = "lzma") -> Compressed:
    """Wrap ``minified`` source in a self-extracting stub (module docstring). ``codec``: lzma | brotli."""
    payload = minified.encode("utf-8")
    blob = _compress(payload, codec)
    text = base64.b85encode(blob).decode("ascii")
    if codec == "lzma":
        head = "import lzma as L,base64 as B\n"
        call = f'L.decompress(B.b85decode("{text}"),L.FORMAT_RAW,filters=[{{"id":L.FILTER_LZMA2}}])'
    else:
        head = "import brotli as R,base64 as B\n"
        call = f'R.decompress(B.b85decode("{text}"))'
    stub = head + f'S={call}.decode()\nexec(compile(S,"{STUB_NAME}","exec"))\n'
    return Compressed(stub=stub, codec=codec, payload=payload, compressed_bytes=len(blob))


_STUB_RE = re.compile(r'b85decode\("([^"]*)"\)')


def extract(stub: str) -> str:
    """The source a stub written by :func:`compress_stub` executes (for review and tests). Raises ``ValueError``
    for text that is not such a stub."""
    m = _STUB_RE.search(stub)
    if not m:
        raise ValueError("not a golflib self-extracting stub (no b85decode(\"...\") payload)")
    blob = base64.b85decode(m.group(1))
    if stub.startswith("import lzma"):
        return lzma.decompress(blob, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]).decode("utf-8")
    if stub.startswith("import brotli"):
        import brotli

        return brotli.decompress(blob).decode("utf-8")
    raise ValueError("not a golflib self-extracting stub (unknown codec import)")


def sizes(source: str, flags: dict[str, bool] | None = None) -> dict:
    """Bytes and lines of every form of ``source``: raw, minified, and the stub with each codec."""
    mini = minify(source, flags=flags)
    out = {"raw_bytes": len(source.encode("utf-8")), "raw_lines": source.count("\n"),
           "minified_bytes": len(mini.encode("utf-8")), "minified_lines": mini.count("\n")}
    for codec in CODECS:
        c = compress_stub(mini, codec)
        out[f"{codec}_compressed_bytes"] = c.compressed_bytes
        out[f"{codec}_stub_bytes"] = c.stub_bytes
    return out
