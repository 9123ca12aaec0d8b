"""The perturbation audit against protocols a competitor could write (issue 15): every planted plugin of
``tests/legality/planted`` — written only through golflib's public extension points — is trained and scored by a
real ``golflib.train`` run, then audited with ``golf audit --perturb``. The illegal ones must FAIL, each on the
check that names what it did; the legal ones (and golflib's own protocols, tests/test_ttt_run.py) must PASS."""

from pathlib import Path

import pytest

from conftest import TINY
from golflib.train import main as train_main
from golflib.workbook.audit import audit_run

pytestmark = pytest.mark.slow
PLANTED = Path(__file__).parent / "planted"
BASE = {**TINY, "ITERATIONS": 4, "VAL_MAX_TOKENS": 1536, "EVAL_STRIDE": 0, "TTT_ENABLED": 0, "NGRAM_ENABLED": 0,
        "TRAIN_LOG_EVERY": 0}
MIXER = {"EVAL_STRIDE": 32, "NGRAM_ENABLED": 1, "NGRAM_PROTOCOLS": "sliding"}


def protocol(name):
    return {"EVAL_PROTOCOLS": f"custom/{name}"}, f"custom/{name}"


def mixer(name):
    return {**MIXER, "NGRAM_MIXER": name}, "ngram/sliding"


def model(name):
    return {"MODEL_CLASS": name}, "quantized/standard"


# plugin file -> (config overrides, the score key it produces, the audit check that must fail; None: must pass)
CASES = {
    "legal_temperature": (*protocol("temperature"), None),
    "legal_score_first_ttt": (*protocol("score_first_ttt"), None),
    "legal_unigram_mixer": (*mixer("unigram_cache"), None),
    "legal_scaled_model": (*model("scaled_gpt"), None),
    "legal_doc_order": (*protocol("doc_order"), None),
    "illegal_train_then_score": (*protocol("train_then_score"), "future perturbation"),
    "illegal_reset_each_update": (*protocol("reset_each_update"), "resets"),
    "illegal_backwards": (*protocol("backwards"), "order"),
    "illegal_best_of_n_passes": (*protocol("best_of_n"), "C4 in the dump: each target once"),
    "illegal_best_of_n_kept": (*protocol("best_of_n_kept"), "future perturbation"),
    "illegal_temperature_fit": (*protocol("temperature_fit"), "future perturbation"),
    "illegal_content_order": (*protocol("content_order"), "order independent of contents"),
    "illegal_nondeterministic": (*protocol("nondeterministic"), "deterministic"),
    "illegal_lean_target": (*mixer("lean_target"), "future perturbation"),
    "illegal_lean_next": (*mixer("lean_next"), "future perturbation"),
    "illegal_cache_before_mix": (*mixer("cache_before_mix"), "future perturbation"),
    "illegal_topk_renorm": (*mixer("topk_renorm"), "C2 on the rows scored"),
    "illegal_train_mode_model": (*model("always_training"), "future perturbation"),
}


def planted_run(tmp_path, embedded_data, plugin: str, overrides: dict) -> Path:
    run_dir = tmp_path / plugin
    cfg = {**BASE, "EVAL_PLUGINS": str(PLANTED / f"{plugin}.py"), **overrides, "DATA_PATH": embedded_data["data_path"],
           "TOKENIZER_PATH": embedded_data["tokenizer_path"]}
    args = ["--preset", "baseline", "--run-dir", str(run_dir)]
    for k, v in cfg.items():
        args += ["--set", f"{k}={v}"]
    assert train_main(args) == 0
    return run_dir


def test_the_suite_covers_every_class_of_the_issue():
    illegal = [k for k, c in CASES.items() if c[2] is not None]
    assert len(illegal) >= 12 and sum(c[2] is None for c in CASES.values()) >= 3
    assert sorted(p.stem for p in PLANTED.glob("*.py")) == sorted(CASES)


@pytest.mark.parametrize("plugin", list(CASES))
def test_planted_protocol_audit(plugin, tmp_path, embedded_data):
    overrides, key, must_fail = CASES[plugin]
    run_dir = planted_run(tmp_path, embedded_data, plugin, overrides)
    lines = []
    out = audit_run(run_dir, perturb=True, cuts=0, echo=lines.append)  # cuts: first chunk, first and longest doc
    text = "\n".join(lines)
    verdicts = {k: p["verdict"] for k, p in out["protocols"].items()}
    entry = out["protocols"][key]
    failed = {c["check"] for c in entry["checks"] if not c["ok"]}
    if must_fail is None:
        assert all(v.startswith("PASS") for v in verdicts.values()), text
        assert entry["perturbation"]["checks"] and out["perturbation_meta"]["replays"] >= 4
    else:
        assert entry["verdict"] == "FAIL" and must_fail in failed, text
        others = {k: v for k, v in verdicts.items() if k != key and not (plugin.endswith("model") and
                                                                      k != "pre_quant")}
        assert all(v.startswith("PASS") for v in others.values()), text


def test_a_stored_score_the_code_does_not_reproduce_and_a_changed_plugin_fail(tmp_path, embedded_data):
    import json
    import shutil

    plugin = tmp_path / "my_protocol.py"
    shutil.copy(PLANTED / "legal_temperature.py", plugin)
    overrides, key, _ = CASES["legal_temperature"]
    run_dir = planted_run(tmp_path, embedded_data, "legal_temperature", {**overrides, "EVAL_PLUGINS": str(plugin)})
    meta = json.loads((run_dir / "config.json").read_text())["meta"]["plugins"]
    assert meta[0]["spec"] == str(plugin) and len(meta[0]["sha256"]) == 64
    # the sums stay consistent (val_bpb from val_loss, tokens, bytes), only the number moved
    res = json.loads((run_dir / "result.json").read_text())
    for k in ("val_loss", "val_bpb"):
        res["scores"][key][k] *= 0.999
    (run_dir / "result.json").write_text(json.dumps(res))
    out = audit_run(run_dir, perturb=True, cuts=0, echo=lambda s: None)
    failed = {c["check"] for c in out["protocols"][key]["checks"] if not c["ok"]}
    assert failed == {"reproduces result.json"}, out["protocols"][key]["checks"]
    plugin.write_text(plugin.read_text().replace("/ 0.9", "/ 0.8"))  # the code changed since the run
    out = audit_run(run_dir, perturb=True, cuts=0, echo=lambda s: None)
    checks = {c["check"]: c for c in out["protocols"][key]["checks"]}
    assert not checks["plugins unchanged"]["ok"] and "changed since the run" in checks["plugins unchanged"]["detail"]
    assert not checks["perturbation audit"]["ok"] and "perturbation_meta" not in out
