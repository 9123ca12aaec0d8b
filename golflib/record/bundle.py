"""The single-file ``train_gpt.py``: golflib's training core concatenated into one self-contained script.

The challenge counts the code in ``train_gpt.py`` toward the 16,000,000-byte limit and runs it from inside the
record folder (SPEC §0, §5.1), so a submission must import nothing from golflib. :func:`build_bundle` takes exactly
the modules :func:`golflib.codesize.core_modules` reaches from ``golflib.train`` (top-level and nested imports),
orders them so that every module follows the modules it imports at top level (package ``__init__``s first, the
root last), and concatenates their source with these edits, located by the AST (comments and layout survive):

- ``from __future__ import ...`` is dropped from every module and written once at the top;
- imports of ``golflib`` names disappear (top-level and nested; a block left empty gets ``pass``), because every
  module's top-level names live in the bundle's one namespace. ``import golflib...``, aliased golflib names and
  ``from golflib.pkg import module`` cannot be flattened and are refused;
- ``if __name__ == "__main__":`` blocks of every module but the root are dropped;
- three seams are set: ``golflib.codesize.BUNDLED = True`` (the counted code is the bundle file itself),
  ``golflib.train.BAKED_CONFIG`` = the run's resolved config as ``{ENV_NAME: value}`` (only fields that differ
  from the defaults; environment variables and ``--set`` still override) and ``golflib.seams.BUNDLE_EXCLUDED`` =
  the optional modules (:data:`golflib.seams.OPTIONAL_MODULES`) the baked config does not reach
  (:func:`golflib.seams.modules_needed`; none without a baked config). Those modules, and what only they import,
  are left out; each lazy import of one becomes ``raise ImportError(...)``, and the bundle refuses at start a
  config that needs one (:func:`golflib.seams.check_bundle_covers`). An included module that imports a left-out
  one at top level is refused (the import must sit in the branch its config field opens).

Flattening is only correct if no name means two things, so the bundler refuses (:class:`BundleError`, naming every
module and line): a top-level name bound by two modules (identical third-party imports excepted), a top-level name
that shadows a builtin another module uses, module-scope introspection whose meaning changes (``__doc__``,
``globals()``, ...), a golflib name imported from a module that does not bind it, an import cycle, and any
workbook-only module (plots, notebook glue, downloader, tokenizer training, records) in the module set.

The compressed, self-extracting form is :mod:`golflib.record.minify`.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import json
import os
import pprint
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from golflib.codesize import PACKAGE, _module_file, core_modules
from golflib.config import Config
from golflib.seams import OPTIONAL_MODULES, modules_needed

ROOT = "golflib.train"
# Modules that must never reach a submission (DESIGN.md "training core"): prefixes match whole dotted names.
WORKBOOK_ONLY = ("golflib.workbook", "golflib.record", "golflib.cli", "golflib.data.fineweb",
                 "golflib.data.tokenizer", "golflib.data.prepare", "golflib.data.corpus")
# Module-scope names whose meaning changes when modules share one namespace.
MODULE_INTROSPECTION = ("__doc__", "__spec__", "__package__", "__path__", "__loader__", "globals", "vars")
SEAMS = {("golflib.codesize", "BUNDLED"), ("golflib.train", "BAKED_CONFIG"), ("golflib.seams", "BUNDLE_EXCLUDED")}


class BundleError(RuntimeError):
    """The training core cannot be flattened into one file as it stands (the message names modules and lines)."""


@dataclass
class Bundle:
    """A generated ``train_gpt.py``. ``source`` is the readable form (UTF-8 text); ``modules`` the concatenated
    module names in order; ``baked`` the baked ``{ENV_NAME: value}`` (None: no config baked); ``excluded`` the
    optional modules left out (the ``BUNDLE_EXCLUDED`` seam)."""

    source: str
    modules: list[str]
    baked: dict | None
    module_bytes: dict[str, int] = field(default_factory=dict)
    excluded: tuple[str, ...] = ()

    @property
    def flags(self) -> dict[str, bool]:
        """The module-level flags the minifier may fold (:func:`golflib.record.minify.fold_flags`)."""
        return {"BUNDLED": True}

    @property
    def raw_bytes(self) -> int:
        return len(self.source.encode("utf-8"))

    @property
    def lines(self) -> int:
        return self.source.count("\n")


def is_workbook_only(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in WORKBOOK_ONLY)


# ---- import analysis ---------------------------------------------------------------------------------------------
def _target_module(node: ast.ImportFrom, modname: str, path: Path) -> str:
    if node.level:
        package = modname if path.name == "__init__.py" else modname.rpartition(".")[0]
        return importlib.util.resolve_name("." * node.level + (node.module or ""), package)
    return node.module or ""


def _is_ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


@dataclass
class _Module:
    name: str
    path: Path
    text: str
    tree: ast.Module
    deps: set[str] = field(default_factory=set)  # golflib modules imported at top level
    imported: list[tuple[str, str, int]] = field(default_factory=list)  # (module, name, line) of golflib names
    golf_imports: set[int] = field(default_factory=set)  # id() of the golflib import statements


def _load(name: str) -> _Module:
    path = _module_file(name)
    text = path.read_text(encoding="utf-8")
    m = _Module(name, path, text, ast.parse(text, filename=str(path)))
    m.golf_imports = {id(n) for n, _ in _golflib_imports(m)}
    return m


def _golflib_imports(m: _Module) -> list[tuple[ast.stmt, bool]]:
    """Every import statement of golflib names in ``m`` as ``(node, top_level)``; refuses forms that cannot be
    flattened."""
    out = []
    top = set(map(id, m.tree.body))
    for node in ast.walk(m.tree):
        if isinstance(node, ast.Import) and any(_is_ours(a.name) for a in node.names):
            raise BundleError(f"{m.name}:{node.lineno}: `{ast.unparse(node)}` binds a golflib module object; "
                              f"import the names it uses (`from golflib.x import name`) so the bundle can flatten it")
        if not isinstance(node, ast.ImportFrom):
            continue
        target = _target_module(node, m.name, m.path)
        if not _is_ours(target):
            continue
        for a in node.names:
            if a.name == "*":
                raise BundleError(f"{m.name}:{node.lineno}: star import from {target} cannot be flattened")
            if a.asname and a.asname != a.name:
                raise BundleError(f"{m.name}:{node.lineno}: `{ast.unparse(node)}` renames {a.name} to {a.asname}; "
                                  f"a bundle has one namespace, so use the name itself")
            if _module_file(f"{target}.{a.name}") is not None:
                raise BundleError(f"{m.name}:{node.lineno}: `{ast.unparse(node)}` imports the module "
                                  f"{target}.{a.name}; import the names it uses instead")
            m.imported.append((target, a.name, node.lineno))
        if id(node) in top:
            m.deps.add(target)
        out.append((node, id(node) in top))
    return out


def _bound_names(target: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


def top_level_bindings(m: _Module) -> list[tuple[str, str, int]]:
    """``(name, key, line)`` for every name bound at module level (into if/try/with/for bodies). ``key`` is
    ``import:<module>:<name>`` for third-party imports (two modules may bind the same import) and ``def`` for
    everything else. golflib imports are not bindings of the bundle (they disappear)."""
    out: list[tuple[str, str, int]] = []

    def visit(body):
        for n in body:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.append((n.name, "def", n.lineno))
            elif isinstance(n, ast.Assign):
                out.extend((x, "def", n.lineno) for t in n.targets for x in _bound_names(t))
            elif isinstance(n, (ast.AnnAssign, ast.AugAssign)):
                out.extend((x, "def", n.lineno) for x in _bound_names(n.target))
            elif isinstance(n, ast.Import):
                for a in n.names:
                    if not _is_ours(a.name):
                        bound = a.asname or a.name.split(".")[0]
                        out.append((bound, f"import:{a.name if a.asname else bound}:", n.lineno))
            elif isinstance(n, ast.ImportFrom):
                if n.level == 0 and not _is_ours(n.module or "") and n.module != "__future__":
                    out.extend((a.asname or a.name, f"import:{n.module}:{a.name}", n.lineno) for a in n.names)
            elif isinstance(n, (ast.For, ast.AsyncFor)):
                out.extend((x, "def", n.lineno) for x in _bound_names(n.target))
                visit(n.body)
                visit(n.orelse)
            elif isinstance(n, (ast.With, ast.AsyncWith)):
                out.extend((x, "def", n.lineno) for it in n.items if it.optional_vars for x in
                           _bound_names(it.optional_vars))
                visit(n.body)
            elif isinstance(n, ast.If):
                if not _is_main_guard(n):
                    visit(n.body)
                    visit(n.orelse)
            elif isinstance(n, ast.Try):
                visit(n.body)
                visit(n.orelse)
                visit(n.finalbody)
                for h in n.handlers:
                    if h.name:
                        out.append((h.name, "def", h.lineno))
                    visit(h.body)
    visit(m.tree.body)
    return out


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and len(node.test.comparators) == 1 and isinstance(node.test.comparators[0], ast.Constant)
            and node.test.comparators[0].value == "__main__")


def check_namespace(mods: list[_Module]) -> None:
    """Refuse collisions in the one namespace of the bundle (module docstring); the message lists all of them."""
    problems: list[str] = []
    binds: dict[str, list[tuple[str, str, int]]] = {}
    own: dict[str, set[str]] = {}
    for m in mods:
        own[m.name] = set()
        for name, key, line in top_level_bindings(m):
            binds.setdefault(name, []).append((m.name, key, line))
            own[m.name].add(name)
    for name, entries in sorted(binds.items()):
        modules = {e[0] for e in entries}
        if len(modules) < 2:
            continue
        keys = {e[1] for e in entries}
        if len(keys) == 1 and next(iter(keys)).startswith("import:"):
            continue  # the same third-party import in several modules
        where = ", ".join(f"{mod}:{line}" for mod, _, line in entries)
        problems.append(f"top-level name {name!r} is bound in several modules ({where}); rename one, or import it "
                        f"from the module that owns it")
    builtin_names = set(dir(builtins))
    loads = {m.name: {n.id for n in ast.walk(m.tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
             for m in mods}
    for name in sorted(set(binds) & builtin_names):
        owners = {e[0] for e in binds[name]}
        users = sorted(mod for mod, used in loads.items() if name in used and mod not in owners)
        if users:
            problems.append(f"top-level name {name!r} of {', '.join(sorted(owners))} shadows the builtin that "
                            f"{', '.join(users)} use(s)")
    for m in mods:
        for n in ast.walk(m.tree):
            if isinstance(n, ast.Name) and n.id in MODULE_INTROSPECTION and isinstance(n.ctx, ast.Load):
                problems.append(f"{m.name}:{n.lineno}: {n.id} means the bundle's module, not {m.name}'s")
        for target, name, line in m.imported:
            if target in own and name not in own[target]:
                problems.append(f"{m.name}:{line}: imports {name} from {target}, which does not bind it at top level")
    if problems:
        raise BundleError("the training core cannot be flattened into one namespace:\n  " + "\n  ".join(problems))


def order_modules(mods: dict[str, _Module], root: str = ROOT) -> list[str]:
    """Topological order: a module after the modules it imports at top level and after its parent packages; ties
    by name; the root last. Raises :class:`BundleError` on an import cycle."""
    deps = {n: {d for d in m.deps if d in mods and d != n} for n, m in mods.items()}
    for n in mods:
        parts = n.split(".")
        deps[n] |= {".".join(parts[:i]) for i in range(1, len(parts))} & set(mods)
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(mods):
        ready = sorted(n for n in mods if n not in done and deps[n] <= done and n != root)
        if not ready:
            if root not in done and deps[root] <= done:
                ready = [root]
            else:
                left = sorted(n for n in mods if n not in done)
                raise BundleError(f"import cycle among top-level imports of: {', '.join(left)}")
        order.append(ready[0])
        done.add(ready[0])
    return order


# ---- source edits --------------------------------------------------------------------------------------------------
def _stmt_lists(tree: ast.AST):
    for node in ast.walk(tree):
        for attr in ("body", "orelse", "finalbody"):
            body = getattr(node, attr, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                yield body
        if isinstance(node, ast.Try):
            for h in node.handlers:
                yield h.body


def _check_alone(lines: list[str], node: ast.stmt, module: str) -> None:
    before = lines[node.lineno - 1][:node.col_offset]
    after = lines[node.end_lineno - 1][node.end_col_offset:]
    if before.strip() or (after.strip() and not after.strip().startswith("#")):
        raise BundleError(f"{module}:{node.lineno}: `{ast.unparse(node)}` shares its line with other code")


def format_baked(baked: dict | None) -> str:
    """The ``BAKED_CONFIG`` assignment: one ``"ENV_NAME": value,`` per line (Python literals)."""
    if baked is None:
        return "BAKED_CONFIG: dict | None = None"
    body = "".join(f"    {json.dumps(k)}: {pprint.pformat(v, width=100)},\n" for k, v in baked.items())
    return "BAKED_CONFIG: dict | None = {\n" + body + "}"


def _left_out(node: ast.stmt, m: _Module, excluded: tuple[str, ...]) -> str | None:
    """The excluded module a golflib import statement imports from, if any."""
    if isinstance(node, ast.ImportFrom):
        target = _target_module(node, m.name, m.path)
        if target in excluded:
            return target
    return None


def edit_module(m: _Module, *, is_root: bool, baked: dict | None, excluded: tuple[str, ...] = ()) -> str:
    """The module's source with the edits of the module docstring applied (comments and layout kept)."""
    lines = m.text.splitlines()
    repl: dict[int, tuple[int, list[str]]] = {}  # first line (0-based) -> (last line, replacement lines)
    imports = m.golf_imports
    for body in _stmt_lists(m.tree):
        for s in body:
            gone = _left_out(s, m, excluded) if id(s) in imports else None
            if gone:
                if body is m.tree.body:
                    raise BundleError(f"{m.name}:{s.lineno}: imports {gone} at top level, but this config leaves it "
                                      f"out (golflib.seams); import it inside the branch its config field opens")
                _check_alone(lines, s, m.name)
                repl[s.lineno - 1] = (s.end_lineno - 1, [
                    " " * s.col_offset + f"raise ImportError({gone!r} + ' is not in this train_gpt.py: its baked "
                    f"config does not use it (golflib.seams)')"])
        drop = [s for s in body if (id(s) in imports and not _left_out(s, m, excluded))
                or (body is m.tree.body and isinstance(s, ast.ImportFrom) and s.module == "__future__")
                or (body is m.tree.body and not is_root and _is_main_guard(s))]
        for s in drop:
            _check_alone(lines, s, m.name)
            repl[s.lineno - 1] = (s.end_lineno - 1, [])
        if drop and len(drop) == len(body):  # an emptied block keeps a statement
            s = drop[0]
            repl[s.lineno - 1] = (s.end_lineno - 1, [" " * s.col_offset + "pass"])
    found = set()
    for s in m.tree.body:
        targets = s.targets if isinstance(s, ast.Assign) else [s.target] if isinstance(s, ast.AnnAssign) else []
        for t in targets:
            if isinstance(t, ast.Name) and (m.name, t.id) in SEAMS:
                _check_alone(lines, s, m.name)
                new = {"BUNDLED": "BUNDLED = True",
                       "BUNDLE_EXCLUDED": f"BUNDLE_EXCLUDED: tuple[str, ...] = {excluded!r}"}.get(t.id) \
                    or format_baked(baked)
                repl[s.lineno - 1] = (s.end_lineno - 1, [new + "  # set by golflib.record.bundle"])
                found.add(t.id)
    missing = {name for mod, name in SEAMS if mod == m.name} - found
    if missing:
        raise BundleError(f"{m.name}: seam {', '.join(sorted(missing))} (a module-level assignment) not found")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if i in repl:
            last, new = repl[i]
            out.extend(new)
            i = last + 1
        else:
            out.append(lines[i])
            i += 1
    text = "\n".join(out).strip("\n") + "\n"
    try:
        ast.parse(text)
    except SyntaxError as e:  # a bug here, not in the module
        raise BundleError(f"{m.name}: edited source does not parse ({e})") from None
    return text


# ---- config ----------------------------------------------------------------------------------------------------------
def portable_config(cfg: Config, data_root: str = "./data") -> Config:
    """``cfg`` with shard and tokenizer paths rewritten to the challenge's layout under ``data_root``
    (``<data_root>/datasets/<name>``, ``<data_root>/tokenizers/<file>``), which is what a record folder documents;
    paths that do not follow the ``.../datasets/<name>`` / ``.../tokenizers/<file>`` layout are kept."""
    d = cfg.data
    out: dict[str, str] = {}
    dp = Path(d.data_path)
    if dp.parent.name == "datasets":
        out["DATA_PATH"] = f"{data_root}/datasets/{dp.name}"
    tp = Path(d.tokenizer_path)
    if tp.parent.name == "tokenizers":
        out["TOKENIZER_PATH"] = f"{data_root}/tokenizers/{tp.name}"
    for key, glob in (("TRAIN_FILES", d.train_files), ("VAL_FILES", d.val_files)):
        g = Path(glob) if glob else None
        if g is not None and g.parent.parent.name == "datasets":
            out[key] = f"{data_root}/datasets/{g.parent.name}/{g.name}"
    return cfg.replace(out)


def baked_config(cfg: Config) -> dict:
    """``{ENV_NAME: value}`` of the fields where ``cfg`` differs from the defaults (``RUN_ID`` cleared: a bundle
    must be runnable more than once; ``COUNTED_CODE_BYTES`` cleared: a bundle counts its own bytes, and the number
    ``golf train`` counted is this bundle's without it). ``Config.from_dict`` of it gives back ``cfg`` with those
    two fields cleared."""
    cfg = cfg.replace({"RUN_ID": "", "COUNTED_CODE_BYTES": 0})
    default = Config().flat()
    baked = {k: v for k, v in cfg.flat().items() if default[k] != v}
    if Config.from_dict(baked) != cfg:
        raise BundleError("baked config does not reproduce the resolved config")  # a bug, not user input
    return baked


# ---- the bundle ------------------------------------------------------------------------------------------------------
def _provenance() -> str:
    import importlib.metadata as md

    try:
        version = md.version(PACKAGE)
    except md.PackageNotFoundError:
        version = "unknown"
    here = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                                timeout=5, cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", PACKAGE], capture_output=True, text=True,
                               timeout=5, cwd=here).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    return f"golflib {version}" + (f", git {commit}{'+dirty' if dirty else ''}" if commit else "")


def module_names(root: str = ROOT, excluded: tuple[str, ...] = ()) -> list[str]:
    """The modules a bundle of ``root`` contains (:func:`golflib.codesize.core_modules`, without ``excluded``);
    refuses workbook-only modules."""
    names = core_modules(root, frozenset(excluded))
    bad = [n for n in names if is_workbook_only(n)]
    if bad:
        raise BundleError(f"workbook-only modules are reachable from {root}: {', '.join(bad)} — the training core "
                          f"must not import them (DESIGN.md); make that import lazy in workbook code instead")
    return names


def build_bundle(cfg: Config | None = None, *, root: str = ROOT, data_root: str | None = "./data") -> Bundle:
    """Generate the readable single-file ``train_gpt.py`` (module docstring).

    ``cfg``: the run's resolved config to bake in (None: no baked config; the script then needs ``--preset``).
    ``data_root``: rewrite data paths with :func:`portable_config` (None keeps them). Raises :class:`BundleError`
    when the training core cannot be flattened (the message names modules and lines)."""
    baked = None
    if cfg is not None:
        baked = baked_config(portable_config(cfg, data_root) if data_root else cfg)
    excluded = () if cfg is None else tuple(m for m in OPTIONAL_MODULES if m not in modules_needed(cfg))
    mods = {n: _load(n) for n in module_names(root, excluded)}
    check_namespace(list(mods.values()))
    order = order_modules(mods, root)
    chunks, sizes = [], {}
    for name in order:
        text = edit_module(mods[name], is_root=name == root, baked=baked, excluded=excluded)
        sizes[name] = len(text.encode("utf-8"))
        chunks.append(f"# ==== {name} ====\n{text}")
    header = (f'"""train_gpt.py: the golflib training core ({len(order)} modules) in one file, generated by '
              f"golflib.record.bundle\n({_provenance()}). The run's resolved config is baked into BAKED_CONFIG; "
              f"environment variables override it.\n"
              f"Left out (the baked config does not use them): {', '.join(excluded) or 'nothing'}.\n\n"
              f"    torchrun --standalone --nproc_per_node=8 train_gpt.py\n\n"
              f"Do not edit by hand: regenerate from golflib.\n"
              f'"""\n\nfrom __future__ import annotations\n\n')
    source = header + "\n\n".join(chunks)
    try:
        compile(source, "train_gpt.py", "exec")
    except SyntaxError as e:
        raise BundleError(f"generated bundle does not compile: {e}") from None
    return Bundle(source=source, modules=order, baked=baked, module_bytes=sizes, excluded=excluded)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a new file (refuses to overwrite: record folders are never overwritten)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; a bundle is never overwritten")
    path.write_text(text, encoding="utf-8")
    return path


def bundle_imports(source: str) -> list[str]:
    """Top-level module names the bundle imports anywhere (for ``requirements.txt``), sorted."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            out.add((node.module or "").split(".")[0])
    return sorted(n for n in out if n)

