"""The single-file bundle: module set, namespace checks, source edits, minification and the compressed stub.
No training here (see test_record_flow.py for the end-to-end runs)."""

from __future__ import annotations

import ast
import runpy
from pathlib import Path

import pytest

from golflib.codesize import core_modules
from golflib.config import Config
from golflib.presets import resolve
from golflib.record.bundle import (BundleError, _golflib_imports, _load, _Module, baked_config, build_bundle, check_namespace,
                                   edit_module, format_baked, is_workbook_only, module_names, order_modules,
                                   portable_config)
from golflib.record.minify import compress_stub, extract, fold_flags, minify, remove_unused_defs
from golflib.record.script import MAX_COMPRESSED_BYTES, make_script, script_form, write_script


def _mod(name: str, text: str) -> _Module:
    m = _Module(name, Path(f"/virtual/{name.replace('.', '/')}.py"), text, ast.parse(text))
    m.golf_imports = {id(n) for n, _ in _golflib_imports(m)}
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
    assert sorted(script.modules) == core_modules(exclude=frozenset(script.stats["excluded_modules"]))
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
        deps = _load(m).deps
        assert all(pos[d] < pos[m] for d in deps), (m, sorted(d for d in deps if pos[d] > pos[m]))
    assert pos["golflib.settings.model"] < pos["golflib.model.gpt"] < pos["golflib.quant.export"] < pos["golflib.train"]
    assert pos["golflib.settings.base"] < pos["golflib.config"] < pos["golflib.train"]


def test_readable_bundle_imports_nothing_from_golflib_and_bakes_the_config(tiny_script, tmp_path):
    cfg, script = tiny_script
    tree = ast.parse(script.readable)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "golflib" for a in node.names), ast.unparse(node)
        if isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] != "golflib" and not node.level, ast.unparse(node)
    assert script.readable.count("from __future__ import annotations") == 1
    assert "BUNDLED = True  # set by golflib.record.bundle" in script.readable
    assert script.readable.count("if __name__ == \"__main__\":") == 1  # only the root's main guard
    # baked config: only non-default fields, data paths in the challenge layout, and it reproduces the config
    assert script.baked["DATA_PATH"] == "./data/datasets/wikivital_sp1024"
    assert script.baked["TOKENIZER_PATH"] == "./data/tokenizers/wikivital_1024_bpe.model"
    assert "RUN_ID" not in script.baked and script.baked["NUM_LAYERS"] == 2
    assert Config.from_dict(script.baked) == portable_config(cfg)
    # run the bundle's own config resolution: baked defaults, environment variables and --set override
    path = tmp_path / "train_gpt.py"
    path.write_text(script.readable)
    g = runpy.run_path(str(path), run_name="bundle_under_test")
    assert g["BAKED_CONFIG"] == script.baked
    got = g["resolve_config"](g["parse_args"]([]))
    assert got.model.num_layers == 2 and got.data.data_path == "./data/datasets/wikivital_sp1024"
    import os

    os.environ["NUM_LAYERS"] = "3"
    try:
        got = g["resolve_config"](g["parse_args"](["--set", "MODEL_DIM=96"]))
    finally:
        del os.environ["NUM_LAYERS"]
    assert got.model.num_layers == 3 and got.model.model_dim == 96 and got.train.seed == cfg.train.seed
    assert g["code_bytes"]() == path.stat().st_size  # the bundle counts itself
    assert g["core_source"]() == script.readable


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
    assert script.counted.count("\n") == 2 and script.counted.isascii()
    # minified = the readable program without docstrings/comments; dataclass fields (annotations) survive
    mini = ast.parse(script.minified)
    assert not [n for n in ast.walk(mini) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
                and isinstance(n.value.value, str)]
    cls = next(n for n in mini.body if isinstance(n, ast.ClassDef) and n.name == "ModelConfig")
    assert sum(isinstance(s, ast.AnnAssign) for s in cls.body) > 20
    lz = compress_stub(script.minified, "lzma")
    assert extract(lz.stub) == script.minified and lz.stub_bytes <= MAX_COMPRESSED_BYTES + 2000
    paths = write_script(script, tmp_path)
    assert paths["script"].read_text() == script.counted and paths["readable"].read_text() == script.readable
    with pytest.raises(FileExistsError):
        write_script(script, tmp_path)


def test_namespace_collisions_fail_loudly():
    a = _mod("golflib.a", "import torch\nfrom typing import Any\nLIMIT = 1\ndef helper():\n    return 1\n")
    b = _mod("golflib.b", "import torch\nfrom typing import Any\nLIMIT = 2\ndef helper():\n    return 2\n")
    with pytest.raises(BundleError) as e:
        check_namespace([a, b])
    msg = str(e.value)
    assert "'LIMIT' is bound in several modules (golflib.a:3, golflib.b:3)" in msg
    assert "'helper'" in msg and "'torch'" not in msg and "'Any'" not in msg  # identical imports are fine
    c = _mod("golflib.c", "from collections.abc import Callable\n")
    d = _mod("golflib.d", "from typing import Callable\n")
    with pytest.raises(BundleError, match="'Callable'"):  # same name, different objects
        check_namespace([c, d])
    e1 = _mod("golflib.e", "def len(x):\n    return 0\n")
    e2 = _mod("golflib.f", "def n(x):\n    return len(x)\n")
    with pytest.raises(BundleError, match="shadows the builtin that golflib.f"):
        check_namespace([e1, e2])
    with pytest.raises(BundleError, match="__doc__ means the bundle's module"):
        check_namespace([_mod("golflib.g", "X = __doc__\n")])
    with pytest.raises(BundleError, match="does not bind it"):
        check_namespace([_mod("golflib.h", "Y = 1\n"), _mod("golflib.i", "from golflib.h import Z\n")])
    check_namespace([a, _mod("golflib.j", "import torch\nfrom golflib.a import LIMIT\nK = LIMIT\n")])


def test_unflattenable_imports_and_cycles_are_refused():
    with pytest.raises(BundleError, match="imports the module golflib.quant.entropy"):
        _mod("golflib.x", "from golflib.quant import entropy\n")
    with pytest.raises(BundleError, match="binds a golflib module object"):
        _mod("golflib.x", "import golflib.config\n")
    with pytest.raises(BundleError, match="renames Config to C"):
        _mod("golflib.x", "from golflib.config import Config as C\n")
    mods = {"golflib.p": _mod("golflib.p", "from golflib.q import A\nB = 1\n"),
            "golflib.q": _mod("golflib.q", "from golflib.p import B\nA = 1\n"),
            "golflib.train": _mod("golflib.train", "from golflib.p import B\n")}
    with pytest.raises(BundleError, match="import cycle"):
        order_modules(mods)
    mods["golflib.q"] = _mod("golflib.q", "A = 1\ndef f():\n    from golflib.p import B\n    return B\n")
    assert order_modules(mods) == ["golflib.q", "golflib.p", "golflib.train"]  # nested imports do not order


def test_edit_module_removes_golflib_imports_keeps_layout():
    src = ('"""doc"""\n\nfrom __future__ import annotations\n\nimport os  # keep me\n\n'
           'from golflib.config import Config\n\n\ndef f():\n    from golflib.config import Config\n\n\n'
           'def g(x):\n    # a comment survives\n    from golflib.config import ModelConfig\n    return x\n\n\n'
           'if __name__ == "__main__":\n    f()\n')
    out = edit_module(_mod("golflib.z", src), is_root=False, baked=None)
    assert "golflib" not in out and "__future__" not in out and "__main__" not in out
    assert "import os  # keep me" in out and "# a comment survives" in out
    assert "def f():\n    pass\n" in out  # an emptied block keeps a statement
    assert ast.parse(out)
    root = edit_module(_mod("golflib.z", src), is_root=True, baked=None)
    assert 'if __name__ == "__main__":' in root
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
    assert "def also_unused" in minify(src, shake=False)  # shaking is what removed them


def test_config_seams_leave_out_what_the_config_does_not_use(tiny_script, tmp_path):
    """golflib.seams: a bundle carries only the optional modules its baked config reaches; a lazy import of a
    left-out one raises, and the bundle refuses at start a config that needs one (NGRAM_ENABLED=1, TTT_KINDS with
    phased), naming the module and the field. A config that uses them keeps them and pays their bytes."""
    cfg, off = tiny_script
    assert not cfg.ngram.ngram_enabled and cfg.ttt.ttt_kinds == ("chunked", "lora")
    assert off.stats["excluded_modules"] == ["golflib.presets", "golflib.eval.ttt_phased", "golflib.eval.doc_eval",
                                             "golflib.eval.ngram_eval", "golflib.quant.lqer", "golflib.data.loaders"]
    assert "# ==== golflib.eval.ngram ====" not in off.readable and "class NgramMixer" not in off.readable
    assert "# ==== golflib.presets ====" not in off.readable and "def eval_ttt_phased" not in off.readable
    assert "raise ImportError('golflib.eval.ngram_eval' + ' is not in this train_gpt.py" in off.readable
    path = tmp_path / "off.py"
    path.write_text(off.readable)
    g = runpy.run_path(str(path), run_name="bundle_under_test")
    assert g["BUNDLE_EXCLUDED"] == tuple(off.stats["excluded_modules"])
    with pytest.raises(SystemExit, match=r"does not use golflib.eval.ngram_eval \(NGRAM_ENABLED=1\)"):
        g["resolve_config"](g["parse_args"](["--set", "NGRAM_ENABLED=1"]))
    with pytest.raises(SystemExit, match=r"golflib.eval.ttt_phased \(TTT_KINDS includes phased\)"):
        g["resolve_config"](g["parse_args"](["--set", "TTT_ENABLED=1", "--set", "TTT_KINDS=phased"]))
    with pytest.raises(ImportError, match="golflib.eval.ttt_phased is not in this train_gpt.py"):
        g["protocol"]("phased")
    assert g["protocol"]("chunked")[1].__name__ == "eval_ttt_chunked"
    assert not g["resolve_config"](g["parse_args"]([])).ngram.ngram_enabled
    on = make_script(cfg.replace({"NGRAM_ENABLED": 1}), form="compressed", codec="brotli")
    assert "golflib.eval.ngram_eval" not in on.stats["excluded_modules"] and "class NgramMixer" in on.readable
    assert "NgramMixer" in on.minified and "run_configured_ngram" in on.minified
    print(f"compressed stub: {off.counted_bytes:,} B without the n-gram mixer, {on.counted_bytes:,} B with it")
    assert on.counted_bytes > off.counted_bytes + 2000
    assert make_script(None).stats["excluded_modules"] == []  # no baked config: every feature stays


def test_bundle_flags_and_arguments():
    assert build_bundle(None).flags == {"BUNDLED": True}
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
