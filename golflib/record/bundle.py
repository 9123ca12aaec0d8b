"""The single-file ``train_gpt.py``: golflib's training core in one self-contained script, modules kept whole.

The challenge counts the code in ``train_gpt.py`` toward the 16,000,000-byte limit and runs it from inside the
record folder (SPEC §0, §5.1), so a submission must import nothing from an installed golflib. :func:`build_bundle`
takes exactly the modules :func:`golflib.codesize.core_modules` reaches from ``golflib.train`` (top-level and
nested imports) and writes each one as a section of the file (``# ==== <module> ====``, then ``if 0:`` and the
module's source indented by one space, so the file never runs it itself), dependencies first. The file starts
with the importer of :mod:`golflib.record.boot`, which serves those sections as real modules — every module keeps
its own namespace, imports between them are ordinary imports, packages are packages — and then calls the root's
``main()``. The sources carry these edits, located by the AST (comments and layout survive):

- ``from __future__ import ...`` becomes a blank line (the importer compiles every module with postponed
  annotations, PEP 563, which every core module asks for);
- ``if __name__ == "__main__":`` blocks are dropped (the file's own entry calls ``main()``);
- a package ``__init__``'s library facade (``__all__, __getattr__, __dir__ = lazy_exports(...)`` and its import,
  :mod:`golflib._facade`) is dropped: the training core imports every name from its defining module (checked), and a
  bundle is a program, not a library;
- three seams are set: ``golflib.codesize.BUNDLED = True`` (the counted code is the bundle file itself),
  ``golflib.train.BAKED_CONFIG`` = the run's resolved config as ``{ENV_NAME: value}`` (only fields that differ
  from the defaults; environment variables and ``--set`` still override) and ``golflib.seams.BUNDLE_EXCLUDED`` =
  the optional modules (:data:`golflib.seams.OPTIONAL_MODULES`) the baked config does not reach
  (:func:`golflib.seams.modules_needed`; none without a baked config). Those modules, and what only they import,
  are left out: importing one raises ``ModuleNotFoundError`` naming it (the importer never falls back to an
  installed golflib), and the bundle refuses at start a config that needs one (:func:`golflib.seams.
  check_bundle_covers`). An included module that imports a left-out one at top level is refused (the import must
  sit in the branch its config field opens).

The bundler also refuses (:class:`BundleError`, naming module and line): a golflib name imported from a module
that does not bind it, a name imported from a package's facade instead of its module, an import cycle among
top-level imports, and any workbook-only module (plots, notebook glue, downloader, tokenizer training, records)
in the module set.

:meth:`Bundle.minified` is the same file with every section minified on its own
(:func:`golflib.record.minify.minify`, told which of the module's names other modules import, so none of those
is shaken out); :mod:`golflib.record.minify` wraps it in the compressed, self-extracting stub.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import pprint
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from golflib.errors import RunDirError
from golflib.codesize import PACKAGE, _module_file, core_modules
from golflib.config import Config
from golflib.record import boot
from golflib.seams import OPTIONAL_MODULES, modules_needed

ROOT = "golflib.train"
# Modules that must never reach a submission (DESIGN.md "training core"): prefixes match whole dotted names.
WORKBOOK_ONLY = ("golflib.workbook", "golflib.record", "golflib.cli", "golflib.data.fineweb",
                 "golflib.data.tokenizer", "golflib.data.prepare", "golflib.data.corpus")
SEAMS = {("golflib.codesize", "BUNDLED"), ("golflib.train", "BAKED_CONFIG"), ("golflib.seams", "BUNDLE_EXCLUDED")}
FLAGS = {"BUNDLED": True}  # module-level flags a bundle sets, folded by the minifier (golflib.codesize binds them)
FLAG_MODULE = "golflib.codesize"
MARK = "# ==== "
FACADE = "lazy_exports"  # golflib._facade's facade builder, dropped from a bundle's package __init__s
FACADE_MODULE = "golflib._facade"  # and so not in a bundle


class BundleError(RuntimeError):
    """The training core cannot be bundled as it stands (the message names modules and lines)."""


@dataclass
class Bundle:
    """A generated ``train_gpt.py``. ``source`` is the readable form (UTF-8 text); ``modules`` the module names in
    file order; ``sections`` ``{module: edited source}``; ``packages`` the modules that are package ``__init__``s;
    ``baked`` the baked ``{ENV_NAME: value}`` (None: no config baked); ``excluded`` the optional modules left out
    (the ``BUNDLE_EXCLUDED`` seam); ``keep`` ``{module: names other modules import from it}`` and ``flags``
    ``{module: {flag: value}}`` (what each section's minification must keep and may fold)."""

    source: str
    modules: list[str]
    baked: dict | None
    sections: dict[str, str] = field(default_factory=dict)
    packages: frozenset[str] = frozenset()
    excluded: tuple[str, ...] = ()
    keep: dict[str, frozenset[str]] = field(default_factory=dict)
    flags: dict[str, dict[str, bool]] = field(default_factory=dict)
    program: str = ""  # the importer and the entry that calls main(): the code above the first section

    @property
    def raw_bytes(self) -> int:
        return len(self.source.encode("utf-8"))

    @property
    def lines(self) -> int:
        return self.source.count("\n")

    @property
    def module_bytes(self) -> dict[str, int]:
        """UTF-8 bytes of each module's edited source."""
        return {n: len(s.encode("utf-8")) for n, s in self.sections.items()}

    def minified(self) -> str:
        """The same program with the importer, the entry and every section minified on its own
        (:func:`golflib.record.minify.minify`; each section keeps the names other modules import from it and
        use, and folds the flags it reads). Raises ``ValueError`` when the result does not compile (a bug)."""
        from golflib.record.minify import minify

        head = minify(self.program, shake=False)
        secs = {n: minify(s, flags=self.flags.get(n), keep=self.keep.get(n, frozenset())) for n, s in
                self.sections.items()}
        text = assemble(head, secs, self.packages)
        try:
            compile(text, "train_gpt.py", "exec")
        except SyntaxError as e:  # a bug in the minifier or here, never a user's input
            raise ValueError(f"minified bundle does not compile: {e}") from None
        return text


def is_workbook_only(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in WORKBOOK_ONLY)


def assemble(head: str, sections: dict[str, str], packages: frozenset[str] | set[str]) -> str:
    """The bundle file: ``head``, then one section per module in order (module docstring of
    :mod:`golflib.record.boot`: marker line, ``if 0:``, the source with one space before every line; a module
    that is only whitespace is written as ``pass``). :func:`golflib.record.boot.read_sections` inverts it exactly
    (``pass`` for those)."""
    out = [head.rstrip("\n") + "\n"]
    for name, src in sections.items():
        out.append(f"{MARK}{name}{' (package)' if name in packages else ''} ====\nif 0:\n "
                   + (src if src.strip() else "pass").replace("\n", "\n ") + "\n")
    return "".join(out)


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
    bound: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (module, name) -> names bound here
    as_objects: set[str] = field(default_factory=set)  # golflib modules bound as module objects here

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def _load(name: str) -> _Module:
    path = _module_file(name)
    text = path.read_text(encoding="utf-8")
    m = _Module(name, path, text, ast.parse(text, filename=str(path)))
    _analyse_imports(m)
    return m


def _analyse_imports(m: _Module) -> None:
    """Fill ``deps``, ``imported``, ``bound`` and ``as_objects`` of ``m`` from its golflib imports."""
    top = set(map(id, m.tree.body))
    for node in ast.walk(m.tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _is_ours(a.name):
                    parts = a.name.split(".")
                    m.as_objects.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
                    if id(node) in top:
                        m.deps.add(a.name)
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        target = _target_module(node, m.name, m.path)
        if not _is_ours(target):
            continue
        if id(node) in top:
            m.deps.add(target)
        for a in node.names:
            sub = f"{target}.{a.name}"
            if a.name == "*":
                m.as_objects.add(target)
            elif _module_file(sub) is not None:
                m.as_objects.add(sub)
                if id(node) in top:
                    m.deps.add(sub)
            else:
                m.imported.append((target, a.name, node.lineno))
                m.bound.setdefault((target, a.name), set()).add(a.asname or a.name)


def _bound_names(target: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


def top_level_names(m: _Module) -> set[str]:
    """Every name ``m`` binds at module level (into if/try/with/for bodies): defs, classes, assignments, imports."""
    out: set[str] = set()

    def visit(body):
        for n in body:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(n.name)
            elif isinstance(n, ast.Assign):
                out.update(x for t in n.targets for x in _bound_names(t))
            elif isinstance(n, (ast.AnnAssign, ast.AugAssign)):
                out.update(_bound_names(n.target))
            elif isinstance(n, ast.Import):
                out.update(a.asname or a.name.split(".")[0] for a in n.names)
            elif isinstance(n, ast.ImportFrom):
                out.update(a.asname or a.name for a in n.names)
            elif isinstance(n, (ast.For, ast.AsyncFor)):
                out.update(_bound_names(n.target))
                visit(n.body)
                visit(n.orelse)
            elif isinstance(n, (ast.With, ast.AsyncWith)):
                out.update(x for it in n.items if it.optional_vars for x in _bound_names(it.optional_vars))
                visit(n.body)
            elif isinstance(n, ast.If):
                visit(n.body)
                visit(n.orelse)
            elif isinstance(n, ast.Try):
                for b in (n.body, n.orelse, n.finalbody, *(h.body for h in n.handlers)):
                    visit(b)
                out.update(h.name for h in n.handlers if h.name)
    visit(m.tree.body)
    return out


def check_imports(mods: dict[str, _Module]) -> None:
    """Refuse golflib names imported from a bundled module that does not bind them, or from a package facade
    (module docstring); the message lists every case."""
    problems: list[str] = []
    own = {n: top_level_names(m) for n, m in mods.items()}
    for m in mods.values():
        for target, name, line in m.imported:
            if target not in mods:
                continue
            if mods[target].is_package and _has_facade(mods[target]) and name not in own[target] - {"__all__"}:
                problems.append(f"{m.name}:{line}: imports {name} from the facade {target}; import it from the "
                                f"module that defines it (a bundle drops facades)")
            elif name not in own[target]:
                problems.append(f"{m.name}:{line}: imports {name} from {target}, which does not bind it at top level")
    if problems:
        raise BundleError("the training core cannot be bundled:\n  " + "\n  ".join(problems))


def keep_names(mods: dict[str, _Module], root: str = ROOT) -> dict[str, frozenset[str]]:
    """``{module: names other bundled modules import from it and use}`` (and the root's ``main``, which the
    bundle's entry calls): what minifying that module must not shake out. An import counts when the importing
    module loads the name or is itself asked for it (a re-export), to a fixed point. A module that some module
    binds as a module object (``import golflib.x``, ``from golflib.pkg import x``) may be used through any
    attribute, so every top-level name of it is kept."""
    keep: dict[str, set[str]] = {n: set() for n in mods}
    if root in keep:
        keep[root].add("main")
    loads = {n: {x.id for x in ast.walk(m.tree) if isinstance(x, ast.Name) and isinstance(x.ctx, ast.Load)}
             for n, m in mods.items()}
    for m in mods.values():
        for n in m.as_objects & set(mods):
            keep[n] |= top_level_names(mods[n])
    changed = True
    while changed:
        changed = False
        for m in mods.values():
            for target, name, _ in m.imported:
                used = m.bound[(target, name)] & (loads[m.name] | keep[m.name])
                if target in keep and name not in keep[target] and used:
                    keep[target].add(name)
                    changed = True
    return {n: frozenset(v) for n, v in keep.items()}


def _has_facade(m: _Module) -> bool:
    return any(isinstance(s, ast.Assign) and isinstance(s.value, ast.Call) and isinstance(s.value.func, ast.Name)
               and s.value.func.id == FACADE for s in m.tree.body)


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


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and len(node.test.comparators) == 1 and isinstance(node.test.comparators[0], ast.Constant)
            and node.test.comparators[0].value == "__main__")


def _is_facade(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.module == "golflib._facade"
    return (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name) and node.value.func.id == FACADE)


def edit_module(m: _Module, *, baked: dict | None, excluded: tuple[str, ...] = ()) -> str:
    """The module's source with the edits of the module docstring applied (comments and layout kept). Raises
    :class:`BundleError` when the module imports a left-out module at top level, or a seam is missing."""
    for s in m.tree.body:
        gone = [d for d in _stmt_imports(s, m) if d in excluded]
        if gone:
            raise BundleError(f"{m.name}:{s.lineno}: imports {gone[0]} at top level, but this config leaves it out "
                              f"(golflib.seams); import it inside the branch its config field opens")
    lines = m.text.splitlines()
    repl: dict[int, tuple[int, list[str]]] = {}  # first line (0-based) -> (last line, replacement lines)
    for s in m.tree.body:
        if (isinstance(s, ast.ImportFrom) and s.module == "__future__") or _is_main_guard(s) \
                or (m.is_package and _is_facade(s)):
            _check_alone(lines, s, m.name)
            repl[s.lineno - 1] = (s.end_lineno - 1, [""] if isinstance(s, ast.ImportFrom) else [])
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
    text = "\n".join(out).rstrip() + "\n"
    try:
        ast.parse(text)
    except SyntaxError as e:  # a bug here, not in the module
        raise BundleError(f"{m.name}: edited source does not parse ({e})") from None
    return text


def _stmt_imports(s: ast.stmt, m: _Module) -> list[str]:
    """golflib modules a top-level statement imports (the module and, for ``from pkg import mod``, the submodule)."""
    if isinstance(s, ast.Import):
        return [a.name for a in s.names if _is_ours(a.name)]
    if isinstance(s, ast.ImportFrom):
        target = _target_module(s, m.name, m.path)
        if _is_ours(target):
            return [target] + [f"{target}.{a.name}" for a in s.names]
    return []


def _flags_of(m: _Module) -> dict[str, bool]:
    """The flags of :data:`FLAGS` that ``m`` binds (the flag module) or imports from it: what its minification
    folds."""
    if m.name == FLAG_MODULE:
        return dict(FLAGS)
    return {name: FLAGS[name] for target, name, _ in m.imported if target == FLAG_MODULE and name in FLAGS}


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
    """The modules a bundle of ``root`` contains (:func:`golflib.codesize.core_modules`, without ``excluded`` and
    the facade builder, whose calls a bundle drops); refuses workbook-only modules."""
    names = core_modules(root, frozenset(excluded) | {FACADE_MODULE})
    bad = [n for n in names if is_workbook_only(n)]
    if bad:
        raise BundleError(f"workbook-only modules are reachable from {root}: {', '.join(bad)} — the training core "
                          f"must not import them (DESIGN.md); make that import lazy in workbook code instead")
    return names


def _boot_source() -> str:
    """:mod:`golflib.record.boot` as it goes into a bundle: its ``import sys`` and its two functions."""
    return "import sys\n\n\n" + inspect.getsource(boot.read_sections) + "\n\n" + inspect.getsource(boot.golflib_boot)


def _entry(root: str) -> str:
    return ('\n\ngolflib_boot(S if "S" in globals() else open(__file__, encoding="utf-8").read(), __file__)  '
            '# S: the source, when a compressed stub runs this\nif __name__ == "__main__":\n'
            f"    from {root} import main\n\n    sys.exit(main())\n")


def build_bundle(cfg: Config | None = None, *, root: str = ROOT, data_root: str | None = "./data") -> Bundle:
    """Generate the readable single-file ``train_gpt.py`` (module docstring).

    ``cfg``: the run's resolved config to bake in (None: no baked config; the script then needs ``--preset``).
    ``data_root``: rewrite data paths with :func:`portable_config` (None keeps them). Raises :class:`BundleError`
    when the training core cannot be bundled (the message names modules and lines) or the config loads plugins
    (``EVAL_PLUGINS``: their modules are not golflib's and are not bundled)."""
    baked = None
    if cfg is not None and cfg.eval.eval_plugins:
        raise BundleError(f"EVAL_PLUGINS={','.join(cfg.eval.eval_plugins)}: a bundle carries golflib's training core "
                          f"only, not plugin modules; fold the plugin's protocol, mixer or model class into the "
                          f"submission by hand (or run it from the package)")
    if cfg is not None:
        baked = baked_config(portable_config(cfg, data_root) if data_root else cfg)
    excluded = () if cfg is None else tuple(m for m in OPTIONAL_MODULES if m not in modules_needed(cfg))
    mods = {n: _load(n) for n in module_names(root, excluded)}
    check_imports(mods)
    order = order_modules(mods, root)
    sections = {name: edit_module(mods[name], baked=baked, excluded=excluded) for name in order}
    packages = frozenset(n for n in order if mods[n].is_package)
    header = (f'"""train_gpt.py: the golflib training core ({len(order)} modules) in one file, generated by '
              f"golflib.record.bundle\n({_provenance()}). Each '{MARK}<module> ====' section below is one module, "
              f"served by the importer\nthat follows (golflib.record.boot). The run's resolved config is baked into "
              f"golflib.train's BAKED_CONFIG;\nenvironment variables override it.\n"
              f"Left out (the baked config does not use them): {', '.join(excluded) or 'nothing'}.\n\n"
              f"    torchrun --standalone --nproc_per_node=8 train_gpt.py\n\n"
              f"Do not edit by hand: regenerate from golflib.\n"
              f'"""\n\n')
    program = _boot_source() + _entry(root)
    source = assemble(header + program, sections, packages)
    try:
        compile(source, "train_gpt.py", "exec")
    except SyntaxError as e:
        raise BundleError(f"generated bundle does not compile: {e}") from None
    return Bundle(source=source, modules=order, baked=baked, sections=sections, packages=packages,
                  excluded=excluded, keep=keep_names(mods, root),
                  flags={n: f for n in order if (f := _flags_of(mods[n]))},
                  program=program)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a new file (refuses to overwrite: record folders are never overwritten)."""
    path = Path(path)
    if path.exists():
        raise RunDirError(f"{path} exists; a bundle is never overwritten")
    path.write_text(text, encoding="utf-8")
    return path


def bundle_imports(source: str) -> list[str]:
    """Top-level module names the bundle's modules import anywhere (for ``requirements.txt``), sorted; golflib
    itself is not one (the bundle carries it). The sections sit under ``if 0:``, so one parse sees them all."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            out.add((node.module or "").split(".")[0])
    return sorted(n for n in out if n and n != PACKAGE)
