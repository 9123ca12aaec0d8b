"""golflib.plugins: loading plugins by file or module name, the three registries and their errors."""

import sys

import pytest

from golflib.config import Config
from golflib.eval.ngram import MIXERS, build_mixer
from golflib.eval.protocols import PROTOCOLS, get_protocol
from golflib.model.registry import MODEL_CLASSES, build_model
from golflib.plugins import (PluginError, load_plugins, plugin_digests, register_mixer, register_model_class,
                             register_protocol)
from golflib.record.bundle import BundleError, build_bundle


def test_load_plugins_by_file_and_by_module_with_their_digests(tmp_path, monkeypatch):
    src = ("from golflib.plugins import register_protocol\n"
           "register_protocol('from_file', lambda *a: None, window='train', unit='document')\n")
    (tmp_path / "my_plugin.py").write_text(src)
    (tmp_path / "my_pkg_plugin.py").write_text(src.replace("from_file", "from_module"))
    monkeypatch.syspath_prepend(str(tmp_path))
    got = load_plugins([str(tmp_path / "my_plugin.py"), "my_pkg_plugin"])
    assert [d["spec"] for d in got] == [str(tmp_path / "my_plugin.py"), "my_pkg_plugin"]
    assert got == plugin_digests([str(tmp_path / "my_plugin.py"), "my_pkg_plugin"]) and len(got[0]["sha256"]) == 64
    p = get_protocol("custom/from_file")
    cfg = Config()
    assert p.unit == "document" and p.seq_len(cfg) == cfg.train.train_seq_len and p.label == "from_file"
    assert "golflib_plugin_my_plugin" in sys.modules
    with pytest.raises(PluginError, match="plugin file .*missing.py does not exist"):
        load_plugins([str(tmp_path / "missing.py")])
    with pytest.raises(PluginError, match="'no_such_plugin_module' not found"):
        load_plugins(["no_such_plugin_module"])
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match="broken.py' failed to import: RuntimeError: boom"):
        load_plugins([str(tmp_path / "broken.py")])
    for k in ("custom/from_file", "custom/from_module"):
        PROTOCOLS.pop(k)


def test_registries_refuse_bad_names_and_name_what_is_missing():
    with pytest.raises(ValueError, match="lowercase"):
        register_protocol("Bad Name", lambda *a: None)
    with pytest.raises(ValueError, match="unit must be one of stream, document"):
        register_protocol("x", lambda *a: None, unit="chunk")
    with pytest.raises(ValueError, match="window must be"):
        register_protocol("x", lambda *a: None, window="val")
    with pytest.raises(ValueError, match="set EVAL_PLUGINS"):
        get_protocol("custom/never_registered")
    with pytest.raises(ValueError, match="other than 'gpt'"):
        register_model_class("gpt", object)
    with pytest.raises(TypeError, match="expected a class"):
        register_model_class("mine", 3)
    with pytest.raises(ValueError, match="MODEL_CLASS='nope' is not registered"):
        build_model(Config().replace({"MODEL_CLASS": "nope"}).model)
    with pytest.raises(ValueError, match="other than 'builtin'"):
        register_mixer("builtin", lambda *a, **k: None)
    cfg = Config().replace({"NGRAM_MIXER": "nope"})
    with pytest.raises(ValueError, match="NGRAM_MIXER='nope' is not registered"):
        build_mixer(cfg.ngram, [1, 2, 3], 8, 1)
    assert "nope" not in MIXERS and "nope" not in MODEL_CLASSES
    with pytest.raises(Exception, match="EVAL_PROTOCOLS"):
        Config().replace({"EVAL_PROTOCOLS": "temperature"})  # must be custom/<name>


def test_a_bundle_refuses_plugins():
    with pytest.raises(BundleError, match="not plugin modules"):
        build_bundle(Config().replace({"EVAL_PLUGINS": "my_plugin.py"}))
