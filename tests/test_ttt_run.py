"""Training with TTT enabled: result.json carries each legal TTT score with its ledger report, the log has the
challenge's lines, and ``golf audit`` re-checks the stored reports and runs the perturbation test."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from golflib.workbook.audit import audit_run
from golflib.workbook.runs import load_result

pytestmark = pytest.mark.slow


def test_result_json_carries_every_protocol_with_its_ledger(ttt_run):
    res = load_result(ttt_run)
    # cpu-tiny exports the records' format (MIXED_EXPORT): sliding, TTT and n-gram score that artifact
    assert res.scored_artifact == "mixed" and not res.has("quantized/sliding")
    slide = res.score("mixed/sliding").to_dict()
    n = slide["tokens"]  # the stream truncated at EVAL_SEQ_LEN (256), as TTT's
    assert n == 3840 and res.val["val_tokens"] == 4032  # VAL_MAX_TOKENS=4096 truncated at 256 / at TRAIN_SEQ_LEN=64
    for key in ("pre_quant", "quantized/standard", "mixed/standard", "mixed/sliding"):
        entry = res.score(key).to_dict()
        led = entry["ledger"]
        assert led["legal"] and led["n_scored"] == entry["tokens"] == led["n_targets"]
        assert entry["ledger"]["n_updates"] == 0 and entry["ledger"]["stream_order"]
    ttt = {k[4:]: e.to_dict() for k, e in res.scores.items() if k.startswith("ttt/")}
    assert set(ttt) == {"chunked", "lora", "phased"}
    for kind, mode in (("chunked", "ttt_chunked"), ("lora", "ttt_lora"), ("phased", "ttt_phased")):
        e = ttt[kind]
        rep = e["ledger"]
        assert e["mode"] == mode and rep["legal"] and rep["violations"] == []
        assert rep["n_scored"] == rep["n_targets"] == e["tokens"] == n and rep["n_updates"] > 0
        assert rep["stream_order"] == (kind == "chunked") and 2 in rep["conditions_checked"]
        ref = res.references[f"ttt/{kind}"]
        assert ref["mode"] == "sliding" and ref["delta_bpb"] == pytest.approx(e["val_bpb"] - slide["val_bpb"])
    assert ttt["chunked"]["details"]["epochs"] == 2 and len(ttt["phased"]["details"]["phases"]) == 2
    assert res.extras["ttt_seconds"] == pytest.approx(sum(ttt[k]["seconds"] for k in ("chunked", "lora", "phased")))
    log = (ttt_run / "train.log").read_text()
    for kind, label, mode in (("chunked", "legal_ttt", "ttt_chunked"), ("lora", "quantized_ttt_lora", "ttt_lora"),
                              ("phased", "quantized_ttt_phased", "ttt_phased")):
        m = re.search(rf"^{label}_exact val_loss:(\d+\.\d{{8}}) val_bpb:(\d+\.\d{{8}}) eval_time:\d+ms "
                      rf"eval_mode:{mode}$", log, re.M)
        assert m, label
        assert float(m.group(2)) == pytest.approx(ttt[kind]["val_bpb"], abs=1e-8)
        assert f"{label}_ledger legal:1" in log


def test_golf_audit_rechecks_reports_and_runs_the_perturbation_test(ttt_run):
    """golflib's own protocols pass the black-box audit (issue 15): the run's scoring path replayed in fresh
    processes reproduces result.json bitwise on this machine, scores the same stream twice identically, and no
    stream or document cut moves a score scored before it."""
    lines = []
    out = audit_run(ttt_run, perturb=True, slice_tokens=2048, cuts=1, echo=lines.append)
    v = {k: p["verdict"] for k, p in out["protocols"].items()}
    assert v == {"pre_quant": "PASS", "pre_quant_live": "PASS", "quantized/standard": "PASS", "mixed/standard": "PASS",
                 "mixed/sliding": "PASS", "ttt/chunked": "PASS", "ttt/lora": "PASS (declared order)",
                 "ttt/phased": "PASS (declared order)",
                 "ngram/sliding": "PASS", "ngram/chunked": "PASS", "ngram/lora": "PASS (declared order)"}, lines
    p = out["protocols"]
    meta = out["perturbation_meta"]
    assert meta["sliced"] and meta["perturbed_targets"] == 2048 and meta["overrides"]["TTT_CHUNK_TOKENS"] == 512
    kinds = {q["kind"] for q in meta["perturbations"]}
    assert kinds == {"stream", "document"} and any("first chunk" in q["name"] for q in meta["perturbations"])
    for key in ("quantized/standard", "mixed/sliding", "ttt/chunked", "ttt/lora", "ttt/phased", "ngram/sliding",
                "ngram/chunked", "ngram/lora"):
        checks = {c["check"]: c for c in p[key]["checks"]}
        for name in ("reproduces result.json", "deterministic", "future perturbation", "order",
                     "order independent of contents", "C2 on the rows scored", "C4 in the dump: each target once"):
            assert checks[name]["ok"], (key, checks[name])
        assert "|diff| 0.00e+00" in checks["reproduces result.json"]["detail"]  # bitwise on CPU
        ran = [r for r in p[key]["perturbation"]["perturbations"] if r["ok"] is not None]
        assert ran and sum(r["n_compared"] for r in ran) > 0 and sum(r["rows_compared"] for r in ran) > 0, key
    assert p["ttt/lora"]["perturbation"]["unit"] == "document" and p["ttt/chunked"]["perturbation"]["unit"] == "stream"
    assert p["pre_quant"]["perturbation"] is None  # the float weights before export: not a submission's score
    assert json.loads(open(out["written_to"]).read())["protocols"].keys() == out["protocols"].keys()


def test_golf_audit_fails_a_tampered_report(ttt_run, tmp_path):
    bad = tmp_path / "tampered"
    bad.mkdir()
    for name in ("config.json", "result.json"):
        shutil.copy(ttt_run / name, bad / name)
    res = json.loads((bad / "result.json").read_text())
    res["scores"]["mixed/sliding"]["bytes"] += 1  # accounting no longer matches the val stream
    res["scores"]["ttt/chunked"]["ledger"]["violation_counts"]["C3"] = 2  # and an inconsistent report
    (bad / "result.json").write_text(json.dumps(res))
    proc = subprocess.run([sys.executable, "-m", "golflib.cli", "audit", str(bad)], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith(("mixed", "ttt"))}
    assert "FAIL" in out["mixed/sliding"] and "accounting" in out["mixed/sliding"]
    assert "FAIL" in out["ttt/chunked"] and "C3" in out["ttt/chunked"]
    assert out["ttt/lora"].split()[-3:] == ["PASS", "(declared", "order)"]
