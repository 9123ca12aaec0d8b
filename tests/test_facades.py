"""The packages' library facades (golflib._facade): every public name resolves to the object its module defines,
lazily, and a bad name is a clear error."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import pytest

from golflib._facade import lazy_exports

PACKAGES = ("golflib.data", "golflib.model", "golflib.optim", "golflib.quant", "golflib.eval")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_facade_name_is_its_modules_object(package):
    pkg = importlib.import_module(package)
    assert pkg.__all__ == sorted(pkg.__all__) and len(pkg.__all__) >= 5
    # a name that is also a submodule would be shadowed by the module once anything imports it
    assert not set(pkg.__all__) & {m.name for m in pkgutil.iter_modules(pkg.__path__)}
    for name in pkg.__all__:
        obj = getattr(pkg, name)
        defining = importlib.import_module(obj.__module__)
        assert getattr(defining, name) is obj and obj.__module__.startswith(package + "."), (package, name)
    assert set(pkg.__all__) <= set(dir(pkg))
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        getattr(pkg, "no_such_name")


def test_facades_import_nothing_until_asked_and_submodule_imports_still_work():
    code = ("import json, sys\nimport golflib.quant, golflib.eval\n"
            "before = sorted(m for m in sys.modules if m.startswith(('golflib.quant.', 'golflib.eval.')))\n"
            "from golflib.quant import export_mixed\nfrom golflib.eval import entropy_alpha\n"
            "from golflib.quant import entropy\n"
            "print(json.dumps({'before': before, 'lqer': 'golflib.quant.lqer' in sys.modules,\n"
            "                  'export': 'golflib.quant.export' in sys.modules, 'mod': entropy.__name__}))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "cannot import name 'entropy_alpha'" in r.stderr  # not exported: a clear error
    r = subprocess.run([sys.executable, "-c", code.replace("from golflib.eval import entropy_alpha\n", "")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["before"] == [] and got["export"] and got["mod"] == "golflib.quant.entropy"
    assert not got["lqer"]  # an optional module stays unloaded until a name of it is asked for


def test_a_name_listed_twice_is_refused():
    with pytest.raises(ValueError, match="pkg: X listed under both a and b"):
        lazy_exports("pkg", {"a": ("X",), "b": ("X", "Y")})
