import pytest

from conftest import REPO
from golflib.errors import RunDirError
from golflib.runlog import create_run_dir
from golflib.workbook.launch import torchrun_command
from golflib.workbook.notebook import ParamError, check_params, notebook_parameters, parse_param_value
from golflib.workbook.training import SMOKE_OVERRIDES, data_overrides, train_overrides


def test_param_parsing_and_checking():
    assert parse_param_value("8") == 8 and parse_param_value("0.5") == 0.5 and parse_param_value("True") is True
    assert parse_param_value("{'NUM_LAYERS': 4}") == {"NUM_LAYERS": 4} and parse_param_value("cpu-tiny") == "cpu-tiny"
    check_params({"a": 1, "b": 2.0, "c": 3}, {"a": int, "b": float, "c": float})
    with pytest.raises(ParamError, match=r"nproc='8': expected int, got str"):
        check_params({"nproc": "8"}, {"nproc": int})
    with pytest.raises(ParamError, match="expected int"):
        check_params({"nproc": True}, {"nproc": int})


def test_notebook_parameter_cells():
    p = notebook_parameters(REPO / "notebooks" / "10_train.ipynb")
    assert p["preset"] == "cpu-tiny" and p["nproc"] == 1 and p["run_dir"] is None and p["overrides"] == {}
    assert notebook_parameters(REPO / "notebooks" / "00_data.ipynb")["vocab_size"] == 1024


def test_train_overrides_order_and_data_root():
    o = train_overrides({"NUM_LAYERS": 3}, preset="cpu-tiny", data_root="/x/data", max_wallclock_seconds=30,
                        seed=5, smoke=True)
    assert o["NUM_LAYERS"] == 3 and o["MODEL_DIM"] == SMOKE_OVERRIDES["MODEL_DIM"]
    assert o["MAX_WALLCLOCK_SECONDS"] == 30.0 and o["SEED"] == 5
    assert o["DATA_PATH"] == "/x/data/datasets/wikivital_sp1024"
    assert o["TOKENIZER_PATH"] == "/x/data/tokenizers/wikivital_1024_bpe.model"
    assert data_overrides("cpu-tiny", "data") == {}


def test_torchrun_command():
    cmd = torchrun_command("runs/x", "baseline", {"NUM_LAYERS": 11, "TIE_EMBEDDINGS": False}, nproc=8)
    assert "--nproc_per_node=8" in cmd and cmd[cmd.index("--run-dir") + 1] == "runs/x"
    assert "NUM_LAYERS=11" in cmd and "TIE_EMBEDDINGS=0" in cmd
    with pytest.raises(ValueError, match="nproc=0"):
        torchrun_command("runs/x", nproc=0)


def test_launch_resolves_once_and_trains_on_the_written_config(tmp_path, monkeypatch):
    """launch_training writes the resolved config to <run_dir>/config.json and runs `golf.train --config` on it:
    no preset, scale or --set is applied a second time in the subprocess."""
    import json

    import golflib.workbook.launch as launch
    from golflib.config import Config
    from golflib.presets import resolve

    seen = {}
    monkeypatch.setattr(launch, "run_training_command", lambda cmd, run_dir, **kw: seen.update(cmd=cmd) or {})
    cfg = resolve("pr1855_arch", {"ITERATIONS": 7}, environ={}, scale=0.125)
    launch.launch_training(tmp_path / "r", cfg, nproc=2, meta={"preset": "pr1855_arch", "scale": 0.125})
    cmd = seen["cmd"]
    assert cmd[cmd.index("--config") + 1] == str(tmp_path / "r" / "config.json") and "--preset" not in cmd
    assert "--set" not in cmd and "--scale" not in cmd and "--nproc_per_node=2" in cmd
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert Config.from_json_file(tmp_path / "r" / "config.json").to_dict() == cfg.to_dict()
    assert saved["meta"]["preset"] == "pr1855_arch" and saved["meta"]["scale"] == 0.125
    # a preset name is resolved here, with the given environment, exactly once
    launch.launch_training(tmp_path / "s", "cpu-tiny", {"NUM_LAYERS": 2}, env={"MODEL_DIM": "96"})
    got = Config.from_json_file(tmp_path / "s" / "config.json")
    assert (got.model.num_layers, got.model.model_dim) == (2, 96)
    (tmp_path / "s" / "train.log").write_text("x")
    with pytest.raises(RunDirError, match="never overwritten"):
        launch.launch_training(tmp_path / "s", "cpu-tiny")


def test_run_ids_unique(tmp_path):
    a, b = create_run_dir(tmp_path, "x"), create_run_dir(tmp_path, "x")
    assert a != b and a.is_dir() and b.is_dir()
