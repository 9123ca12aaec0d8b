"""The single-file bundle: module set, namespace checks, source edits, minification and the compressed stub.
No training here (see test_record_flow.py for the end-to-end runs)."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from golflib.errors import RunDirError
from golflib.codesize import core_modules
from golflib.config import Config
from golflib.presets import resolve
from golflib.record.boot import golflib_boot, read_sections
from golflib.record.bundle import (BundleError, _analyse_imports, _load, _Module, assemble, baked_config, build_bundle,
                                   check_imports, edit_module, format_baked, is_workbook_only, keep_names,
                                   module_names, order_modules, portable_config)
from golflib.record.minify import compress_stub, extract, fold_flags, minify, remove_unused_defs
from golflib.record.script import MAX_COMPRESSED_BYTES, make_script, script_form, write_script


def _mod(name: str, text: str, package: bool = False) -> _Module:
    path = f"/virtual/{name.replace('.', '/')}" + ("/__init__.py" if package else ".py")
    m = _Module(name, Path(path), text, ast.parse(text))
    _analyse_imports(m)
    return m


@pytest.fixture(scope="module")
def tiny_script():
    # a record-like config: no eval-time n-gram mixer (test_config_seams_... bundles one that carries it)
    cfg = resolve("cpu-tiny", {"NUM_LAYERS": 2, "NGRAM_ENABLED": 0,
                               "DATA_PATH": "/somewhere/data7/datasets/wikivital_sp1024",
                               "TOKENIZER_PATH": "/somewhere/data7/tokenizers/wikivital_1024_bpe.model"}, environ={})
    return cfg, make_script(cfg, form="compressed", codec="brotli")


def test_bundle_holds_exactly_the_training_core_and_no_workbook_code(tiny_script):
    _, script = tiny_script
    assert sorted(script.modules) == core_modules(exclude=frozenset(script.stats["excluded_modules"]) | {
        "golflib._facade"})  # the facade builder is the one module a bundle drops on its own
    assert set(core_modules()) - set(script.modules) >= set(script.stats["excluded_modules"])
    assert script.modules[-1] == "golflib.train" and script.modules[0] == "golflib"
    leaked = [m for m in script.modules if is_workbook_only(m)]
    assert not leaked, f"workbook-only modules reached the bundle: {leaked}"
    for mod in ("golflib.workbook.plots", "golflib.record.bundle", "golflib.data.fineweb", "golflib.data.tokenizer",
                "golflib.workbook.notebook", "golflib.cli"):
        assert is_workbook_only(mod), mod
    # the walk is what keeps them out: a root that reaches workbook code is refused
    with pytest.raises(BundleError, match="workbook-only modules are reachable"):
        module_names("golflib.workbook.launch")
    # every module appears after the modules it imports at top level
    pos = {m: i for i, m in enumerate(script.modules)}
    for m in script.modules:
        deps = _load(m).deps & set(pos)
        assert all(pos[d] < pos[m] for d in deps), (m, sorted(d for d in deps if pos[d] > pos[m]))
    assert pos["golflib.settings.model"] < pos["golflib.model.gpt"] < pos["golflib.quant.export"] < pos["golflib.train"]
    assert pos["golflib.settings.base"] < pos["golflib.config"] < pos["golflib.train"]


def _in_bundle(path: Path, code: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter after the bundle at ``path`` booted (not as __main__: its importer is
    installed, main() does not run); ``code`` prints one JSON line, returned here."""
    driver = (f"import json, os, runpy, sys\nrunpy.run_path({str(path)!r}, run_name='bundle_under_test')\n"
              f"import golflib.train as T\n{code}")
    r = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **(env or {})}, cwd=path.parent)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_readable_bundle_keeps_each_module_whole_and_bakes_the_config(tiny_script, tmp_path):
    """The file's head (docstring, importer, entry) imports nothing from golflib; every section is one module's
    own source, byte for byte, but for the bundler's edits; the modules run from the file alone, in their own
    namespaces, with the baked config."""
    cfg, script = tiny_script
    head = script.readable.split("\n# ==== ")[0]
    for node in ast.walk(ast.parse(head)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if ast.unparse(node) != "from golflib.train import main":  # the entry, through the importer
                assert not any(n.split(".")[0] == "golflib" for n in names), ast.unparse(node)
    srcs, packages = read_sections(script.readable)
    assert list(srcs) == script.modules and packages == set(script.modules) - {
        m for m in script.modules if not _load(m).is_package}
    assert "golflib.quant" in packages and "golflib.quant.export" not in packages
    for name, src in srcs.items():
        original = Path(_load(name).path).read_text(encoding="utf-8")
        if name not in ("golflib.train", "golflib.codesize", "golflib.seams") and not _load(name).is_package:
            # the only edits: `from __future__ import annotations` is a blank line, `__main__` guards are gone
            want = original.replace("from __future__ import annotations\n", "\n")
            assert src.rstrip("\n") == want.rstrip("\n").split('\n\nif __name__ == "__main__":')[0].rstrip(), name
    assert "BUNDLED = True  # set by golflib.record.bundle" in srcs["golflib.codesize"]
    assert "lazy_exports" not in srcs["golflib.quant"] and "golflib._facade" not in script.modules
    # two modules may bind the same top-level name: each keeps its own (the flat bundle had to refuse this)
    assert "def compress(" in srcs["golflib.quant.codecs"] and "_module_file" in srcs["golflib.codesize"]
    # baked config: only non-default fields, data paths in the challenge layout, and it reproduces the config
    assert script.baked["DATA_PATH"] == "./data/datasets/wikivital_sp1024"
    assert script.baked["TOKENIZER_PATH"] == "./data/tokenizers/wikivital_1024_bpe.model"
    assert "RUN_ID" not in script.baked and script.baked["NUM_LAYERS"] == 2
    assert Config.from_dict(script.baked) == portable_config(cfg)
    # run the bundle's own config resolution: baked defaults, environment variables and --set override
    path = tmp_path / "train_gpt.py"
    path.write_text(script.readable)
    got = _in_bundle(path, """
import golflib.codesize as C
a = T.resolve_config(T.parse_args([]))
print(json.dumps({"baked": T.BAKED_CONFIG, "a": [a.model.num_layers, a.data.data_path, a.train.seed],
                  "files": sorted({m.__file__ for n, m in sys.modules.items() if n.startswith("golflib")}),
                  "bytes": C.code_bytes(), "same_source": C.core_source() == open(T.__file__).read(),
                  "bundled": C.BUNDLED, "name": T.__name__}))
""")
    assert got["baked"] == json.loads(json.dumps(script.baked))
    assert got["a"] == [2, "./data/datasets/wikivital_sp1024", cfg.train.seed]
    assert got["files"] == [str(path)] and got["bundled"] and got["name"] == "golflib.train"
    assert got["bytes"] == path.stat().st_size and got["same_source"]  # the bundle counts itself
    got = _in_bundle(path, """
c = T.resolve_config(T.parse_args(["--set", "MODEL_DIM=96"]))
print(json.dumps([c.model.num_layers, c.model.model_dim]))
""", env={"NUM_LAYERS": "3"})
    assert got == [3, 96]


def test_the_bundle_imports_only_its_own_modules(tiny_script, tmp_path):
    """golflib is installed here, yet a bundled module never comes from it: a left-out module is refused by name,
    a traceback shows the bundle's own source, and a process that already imported golflib is refused."""
    _, script = tiny_script
    path = tmp_path / "train_gpt.py"
    path.write_text(script.readable)
    got = _in_bundle(path, """
try:
    import golflib.eval.ttt_phased
    out = "imported"
except ModuleNotFoundError as e:
    out = str(e)
import traceback
from golflib.quant.codecs import parse_codec
try:
    parse_codec("nope")
    tb = ""
except Exception:
    tb = traceback.format_exc()
print(json.dumps({"phased": out, "tb": tb}))
""")
    assert got["phased"] == ("golflib.eval.ttt_phased is not in this train_gpt.py: its baked config does not use it "
                             "(golflib.seams)")
    shown = re.search(r'File "<train_gpt.py golflib.quant.codecs>", line \d+, in parse_codec\n +(\S.*)', got["tb"])
    assert shown and shown.group(1).startswith("raise "), got["tb"]  # the source line, from the bundle's text
    r = subprocess.run([sys.executable, "-c", f"import golflib.config, runpy; runpy.run_path({str(path)!r})"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "golflib, golflib.config" in r.stderr and "must start in a fresh one" in r.stderr


def test_sections_invert_exactly_and_packages_are_packages(tmp_path):
    """assemble / read_sections / golflib_boot on a toy package (in this process: its own top-level name): the
    text of every module comes back byte for byte (multi-line strings, blank lines, trailing spaces), packages have
    __path__, relative imports work, and a module the bundle lacks is refused although it exists on disk."""
    srcs = {"toybundle": "X = 1\n",
            "toybundle.sub": 'S = """a\n\n  b  \n"""\nfrom . import X as Y\nfrom toybundle.leaf import f\n',
            "toybundle.leaf": "def f():\n    return __name__, __file__\n"}
    text = assemble("import sys\n", srcs, {"toybundle"})
    got, packages = read_sections(text)
    assert got == srcs and packages == {"toybundle"}
    compile(text, "t", "exec")  # the whole file is valid Python; its sections never run on their own
    (tmp_path / "toybundle").mkdir()
    (tmp_path / "toybundle" / "__init__.py").write_text("")
    (tmp_path / "toybundle" / "other.py").write_text("Z = 1\n")
    sys.path.insert(0, str(tmp_path))
    finders = list(sys.meta_path)
    try:
        assert golflib_boot(text, "/x/train_gpt.py") == srcs
        import toybundle.sub as sub

        assert sub.S == 'a\n\n  b  \n' and sub.Y == 1 and sub.f() == ("toybundle.leaf", "/x/train_gpt.py")
        assert sys.modules["toybundle"].__path__ == [] and not hasattr(sys.modules["toybundle.leaf"], "__path__")
        with pytest.raises(ModuleNotFoundError, match="toybundle.other is not in this train_gpt.py"):
            importlib.import_module("toybundle.other")
        with pytest.raises(ImportError, match="toybundle, toybundle.leaf, toybundle.sub already imported"):
            golflib_boot(text, "/x/train_gpt.py")
    finally:
        sys.meta_path[:] = finders
        sys.path.remove(str(tmp_path))
        for m in [m for m in sys.modules if m.split(".")[0] == "toybundle"]:
            del sys.modules[m]
    with pytest.raises(ValueError, match="not a bundled train_gpt.py"):
        read_sections("print(1)\n")


def test_compressed_stub_fits_and_round_trips(tiny_script, tmp_path):
    _, script = tiny_script
    st = script.stats
    print(f"bundle: {st['modules']} modules, readable {st['raw_bytes']:,} B / {st['raw_lines']:,} lines, "
          f"minified {st['minified_bytes']:,} B / {st['minified_lines']:,} lines, brotli {st['compressed_bytes']:,} B, "
          f"stub {st['stub_bytes']:,} B")
    assert st["counted_bytes"] == st["stub_bytes"] == len(script.counted.encode()) <= MAX_COMPRESSED_BYTES
    assert st["minified_bytes"] < 0.6 * st["raw_bytes"]
    assert extract(script.counted) == script.minified
    assert script_form(script.counted) == "compressed" and script_form(script.readable) == "readable"
    assert script.counted.count("\n") == 3 and script.counted.isascii()
    # minified = the readable program without docstrings/comments, module by module; dataclass fields survive
    msrcs, _ = read_sections(script.minified)
    assert list(msrcs) == script.modules
    for name, src in msrcs.items():
        tree = ast.parse(src)
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
                    and isinstance(n.value.value, str)], name
    cls = next(n for n in ast.parse(msrcs["golflib.settings.model"]).body
               if isinstance(n, ast.ClassDef) and n.name == "ModelConfig")
    assert sum(isinstance(s, ast.AnnAssign) for s in cls.body) > 20
    lz = compress_stub(script.minified, "lzma")
    assert extract(lz.stub) == script.minified and lz.stub_bytes <= MAX_COMPRESSED_BYTES + 2000
    paths = write_script(script, tmp_path)
    assert paths["script"].read_text() == script.counted and paths["readable"].read_text() == script.readable
    with pytest.raises(RunDirError):
        write_script(script, tmp_path)


def test_imports_are_checked_and_kept_names_follow_use():
    """Modules keep their namespaces, so the same name in two modules, module-object imports and renamed imports
    are all fine; a name a module does not bind, a name taken from a facade, and an import cycle are refused; the
    names a module must keep when minified are those other modules import and use (re-exports followed)."""
    a = _mod("golflib.a", "import torch\nLIMIT = 1\ndef helper():\n    return 1\ndef spare():\n    return 0\n")
    b = _mod("golflib.b", "LIMIT = 2\nfrom golflib.a import helper as h, spare\nX = h()\n")
    c = _mod("golflib.c", "from golflib.b import spare\ndef g():\n    return spare()\n")
    d = _mod("golflib.d", "import golflib.a\nY = golflib.a.LIMIT\n")
    mods = {m.name: m for m in (a, b, c, d)}
    check_imports(mods)
    keep = keep_names({"golflib.a": a, "golflib.b": b, "golflib.c": c}, root="golflib.c")
    assert keep == {"golflib.a": {"helper", "spare"}, "golflib.b": {"spare"}, "golflib.c": {"main"}}
    assert keep_names(mods, root="golflib.c")["golflib.a"] >= {"LIMIT", "helper", "spare", "torch"}  # a module object
    with pytest.raises(BundleError, match="imports Z from golflib.h, which does not bind it"):
        check_imports({"golflib.h": _mod("golflib.h", "Y = 1\n"),
                       "golflib.i": _mod("golflib.i", "from golflib.h import Z\n")})
    pkg = _mod("golflib.p", "from golflib._facade import lazy_exports\n__all__, __getattr__, __dir__ = "
               "lazy_exports(__name__, {'q': ('Q',)})\n", package=True)
    with pytest.raises(BundleError, match="imports Q from the facade golflib.p; import it from the module"):
        check_imports({"golflib.p": pkg, "golflib.q": _mod("golflib.q", "Q = 1\n"),
                       "golflib.r": _mod("golflib.r", "from golflib.p import Q\n")})
    mods = {"golflib.p": _mod("golflib.p", "from golflib.q import A\nB = 1\n"),
            "golflib.q": _mod("golflib.q", "from golflib.p import B\nA = 1\n"),
            "golflib.train": _mod("golflib.train", "from golflib.p import B\n")}
    with pytest.raises(BundleError, match="import cycle"):
        order_modules(mods)
    mods["golflib.q"] = _mod("golflib.q", "A = 1\ndef f():\n    from golflib.p import B\n    return B\n")
    assert order_modules(mods) == ["golflib.q", "golflib.p", "golflib.train"]  # nested imports do not order


def test_edit_module_keeps_the_module_and_sets_the_seams():
    src = ('"""doc"""\n\nfrom __future__ import annotations\n\nimport os  # keep me\n\n'
           'from golflib.config import Config\n\n\ndef f():\n    from golflib.config import Config\n\n\n'
           'def g(x):\n    # a comment survives\n    return x\n\n\n'
           'if __name__ == "__main__":\n    f()\n')
    out = edit_module(_mod("golflib.z", src), baked=None)
    assert "__future__" not in out and "__main__" not in out
    assert out.splitlines()[4] == "import os  # keep me"  # line numbers are the module's own
    assert "from golflib.config import Config" in out and "# a comment survives" in out
    with pytest.raises(BundleError, match="imports golflib.eval.ngram_eval at top level, but this config leaves"):
        edit_module(_mod("golflib.z", "from golflib.eval.ngram_eval import eval_with_mixer\n"), baked=None,
                    excluded=("golflib.eval.ngram_eval",))
    lazy = "def f():\n    from golflib.eval.ngram_eval import eval_with_mixer\n    return eval_with_mixer\n"
    assert edit_module(_mod("golflib.z", lazy), baked=None, excluded=("golflib.eval.ngram_eval",)) == lazy
    pkg = ('"""pkg"""\n\nfrom golflib._facade import lazy_exports\n\n__all__, __getattr__, __dir__ = lazy_exports(\n'
           '    __name__, {"m": ("A",)})\n')
    assert edit_module(_mod("golflib.pk", pkg, package=True), baked=None) == '"""pkg"""\n'
    assert format_baked({"NUM_LAYERS": 2, "TTT_KINDS": ("chunked",)}) == (
        'BAKED_CONFIG: dict | None = {\n    "NUM_LAYERS": 2,\n    "TTT_KINDS": (\'chunked\',),\n}')
    assert baked_config(Config()) == {}
    # a run's counted code bytes and run id are not baked: the bundle counts itself and runs more than once
    assert baked_config(Config().replace({"COUNTED_CODE_BYTES": 66_000, "RUN_ID": "x", "NUM_LAYERS": 3})) == {
        "NUM_LAYERS": 3}


def test_minify_preserves_behaviour():
    src = '''
from __future__ import annotations
import json
import os
from dataclasses import dataclass
FLAG = True
REG = {}
def register(fn):
    """registry decorator"""
    REG[fn.__name__] = fn
    return fn
@register
def registered() -> int:
    return 7
def unused_helper(x: int) -> int:
    """dead code"""
    return x + 1
def also_unused() -> int:
    return unused_helper(1)
@dataclass
class Point:
    """a point"""
    x: int = 1
    y: float = 2.0
def area(p: Point, scale: float = 1.0) -> float:
    """area"""
    z: float = p.x * p.y  # local annotation
    w: int
    if FLAG:
        return z * scale
    return -1.0
def main():
    if not FLAG:
        raise SystemExit("folded away")
    return area(Point(3, 4.0), 2.0), REG["registered"](), json.dumps([1])
RESULT = main()
'''
    mini = minify(src, flags={"FLAG": True}, rename_locals=False)  # golflib's own AST passes
    short = minify(src, flags={"FLAG": True})  # + python-minifier's local renaming
    g1, g2, g3 = {}, {}, {}
    exec(compile(src, "a", "exec"), g1)
    exec(compile(mini, "b", "exec"), g2)
    exec(compile(short, "c", "exec"), g3)
    assert g1["RESULT"] == g2["RESULT"] == g3["RESULT"] == (24.0, 7, "[1]")
    assert len(short) < len(mini) and "unused_helper" not in short and "x:int=1" in short  # dataclass field kept
    assert "unused_helper" not in mini and "also_unused" not in mini and "registered" in mini
    assert "import os" not in mini and "import json" in mini and '"""' not in mini and "-> float" not in mini
    assert "x: int = 1" in mini and "folded away" not in mini and "return -1.0" not in mini
    assert "\n  return" not in mini and "\n return" in mini  # one space per level
    tree = ast.parse("FLAG = True\nFLAG = False\n")
    with pytest.raises(ValueError, match="exactly one"):
        fold_flags(tree, {"FLAG": True})
    assert remove_unused_defs(ast.parse("def a():\n    return b()\ndef b():\n    return 1\n")) == ["a", "b"]
    assert remove_unused_defs(ast.parse("def a():\n    return b()\ndef b():\n    return 1\n"), keep={"a"}) == []
    assert "def also_unused" in minify(src, shake=False)  # shaking is what removed them
    # a module that imports the flag folds it too; unused golflib and stdlib imports go, names others import stay
    reader = ("import json, os\nfrom golflib.codesize import BUNDLED\nfrom golflib.x import a, b\n"
              "def f():\n    if BUNDLED:\n        return a\n    return os.sep\ndef g():\n    return json\n")
    out = minify(reader, flags={"BUNDLED": True}, rename_locals=False, keep={"f"})
    assert "from golflib.x import a\n" in out and "os" not in out and "json" not in out and "def g" not in out
    assert "from golflib.codesize" not in out and "if " not in out
    with pytest.raises(ValueError, match="exactly one"):
        minify("from golflib.codesize import BUNDLED\nBUNDLED = 0\n", flags={"BUNDLED": True})


def test_config_seams_leave_out_what_the_config_does_not_use(tiny_script, tmp_path):
    """golflib.seams: a bundle carries only the optional modules its baked config reaches; a lazy import of a
    left-out one raises, and the bundle refuses at start a config that needs one (NGRAM_ENABLED=1, TTT_KINDS with
    phased), naming the module and the field. A config that uses them keeps them and pays their bytes."""
    cfg, off = tiny_script
    assert not cfg.ngram.ngram_enabled and cfg.ttt.ttt_kinds == ("chunked", "lora")
    assert off.stats["excluded_modules"] == ["golflib.presets", "golflib.eval.ttt_phased", "golflib.eval.doc_eval",
                                             "golflib.eval.ngram_eval", "golflib.quant.lqer", "golflib.data.loaders",
                                             "golflib.plugins", "golflib.eval.dump", "golflib.quant.pergroup"]
    assert "# ==== golflib.eval.ngram ====" not in off.readable and "class NgramMixer" not in off.readable
    assert "# ==== golflib.presets ====" not in off.readable and "def eval_ttt_phased" not in off.readable
    path = tmp_path / "off.py"
    path.write_text(off.readable)
    got = _in_bundle(path, """
import golflib.seams as S, golflib.eval.ttt as ttt
def refused(args):
    try:
        T.resolve_config(T.parse_args(args))
        return ""
    except SystemExit as e:
        return str(e)
try:
    ttt.protocol("phased")
    phased = ""
except ImportError as e:
    phased = str(e)
print(json.dumps({"excluded": S.BUNDLE_EXCLUDED, "ngram": refused(["--set", "NGRAM_ENABLED=1"]),
                  "ttt": refused(["--set", "TTT_ENABLED=1", "--set", "TTT_KINDS=phased"]), "phased": phased,
                  "chunked": ttt.protocol("chunked")[1].__name__,
                  "plain": T.resolve_config(T.parse_args([])).ngram.ngram_enabled}))
""")
    assert got["excluded"] == off.stats["excluded_modules"]
    assert re.search(r"does not use golflib.eval.ngram_eval \(NGRAM_ENABLED=1\)", got["ngram"]), got["ngram"]
    assert "golflib.eval.ttt_phased (TTT_KINDS includes phased)" in got["ttt"]
    assert got["phased"].startswith("golflib.eval.ttt_phased is not in this train_gpt.py")
    assert got["chunked"] == "eval_ttt_chunked" and got["plain"] is False
    on = make_script(cfg.replace({"NGRAM_ENABLED": 1}), form="compressed", codec="brotli")
    assert "golflib.eval.ngram_eval" not in on.stats["excluded_modules"] and "class NgramMixer" in on.readable
    assert "NgramMixer" in on.minified and "run_configured_ngram" in on.minified
    print(f"compressed stub: {off.counted_bytes:,} B without the n-gram mixer, {on.counted_bytes:,} B with it")
    assert on.counted_bytes > off.counted_bytes + 2000
    assert make_script(None).stats["excluded_modules"] == []  # no baked config: every feature stays


def test_bundle_flags_and_arguments():
    flags = build_bundle(None).flags  # the flag's owner and every module that reads it fold it when minified
    assert flags["golflib.codesize"] == flags["golflib.trainer"] == flags["golflib.runresult"] == {"BUNDLED": True}
    assert "golflib.model.gpt" not in flags
    with pytest.raises(ValueError, match="form"):
        make_script(None, form="zip")
    with pytest.raises(ValueError, match="codec"):
        make_script(None, codec="gzip")
    b = build_bundle(None)
    assert b.baked is None and "BAKED_CONFIG: dict | None = None" in b.source


def test_every_preset_bundles_with_its_own_seams():
    """Each preset's bundle leaves out exactly the optional modules its config does not reach, and still builds
    (no included module imports a left-out one at top level)."""
    from golflib.presets import PRESETS
    from golflib.seams import OPTIONAL_MODULES, modules_needed

    sizes = {}
    for name in sorted(PRESETS):
        cfg = resolve(name, environ={})
        b = build_bundle(cfg)
        need = modules_needed(cfg)
        assert set(b.excluded) == set(OPTIONAL_MODULES) - set(need), name
        assert not set(b.excluded) & set(b.modules), name
        assert f"BUNDLE_EXCLUDED: tuple[str, ...] = {b.excluded!r}" in b.source
        sizes[name] = b.raw_bytes
    print("readable bundle bytes per preset:", sizes)
    need = modules_needed(resolve("pr1855", environ={}))
    assert need["golflib.eval.ttt_phased"] == "TTT_KINDS includes phased" and "golflib.eval.ttt_chunked" not in need
    assert need["golflib.eval.doc_eval"] == "TTT_KINDS includes phased"  # also EVAL_DOC_ISOLATED=1
    assert need["golflib.data.loaders"] == "TRAIN_LOADER=packed" and need["golflib.quant.lqer"]
    base = modules_needed(resolve("baseline", environ={}))
    assert set(base) == {"golflib.quant.preflight"}  # int8+zlib, no TTT, no mixer: the smallest bundle
    assert "golflib.quant.pergroup" not in need  # the preset's entropy coder; #1855's own codec is a field away
    pg = resolve("pr1855", {"MIXED_CODEC": "pergroup-lrzip"}, environ={})
    assert modules_needed(pg)["golflib.quant.pergroup"] == "MIXED_CODEC=pergroup-lrzip"
    b = build_bundle(pg)
    assert "golflib.quant.pergroup" in b.modules and "golflib.quant.pergroup" not in b.excluded
