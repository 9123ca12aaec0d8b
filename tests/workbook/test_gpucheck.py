"""``golf gpu-check`` (issue 14). No GPU here: the dry mode runs the whole pre-flight on the CPU at small scale and
reports each CUDA-only check as what it would check; judged on the CPU, the same report fails exactly the checks a
GPU run must pass (SDPA instead of FlashAttention, no compile, the fp32 layout), and the command exits 1."""

import json
import subprocess
import sys

import pytest

from golflib.workbook.gpucheck import RECORD_FIGURES, format_report, gpu_check

pytestmark = pytest.mark.slow


def _by_name(rep):
    return {c["name"]: c for c in rep["checks"]}


def test_dry_mode_reports_what_it_would_check_and_measures():
    rep = gpu_check("pr1855_arch", steps=1, warmup=1, slice_tokens=512)
    c = _by_name(rep)
    assert rep["dry"] and rep["ok"]
    for name in ("flash_attention_import", "attention_dense", "attention_varlen", "bf16_layout", "compile",
                 "ms_per_step", "eval_projected_s"):
        assert c[name]["status"] == "dry", name
    assert c["ms_per_step"]["reference"] == RECORD_FIGURES["pr1855_arch"]["ms_per_step"] == 121.7
    assert set(c["ms_per_step"]["value"]) == {"loops_0", "loops_2"} and all(v > 0 for v in
                                                                           c["ms_per_step"]["value"].values())
    assert c["projected_steps"]["value"] > 0 and c["projected_steps"]["reference"] == 4931
    assert "eval:ttt/phased" in c and c["eval:ttt/phased"]["value"]["projected_s"] > 0  # the record's own TTT kind
    assert c["eval_projected_s"]["value"] == pytest.approx(sum(v["value"]["projected_s"] for k, v in c.items()
                                                               if k.startswith("eval:")), abs=0.2)
    text = format_report(rep)
    assert "[DRY: no CUDA]" in text and text.splitlines()[-1] == "RESULT: ok (dry)"


def test_judged_on_cpu_it_fails_the_silent_fallbacks():
    rep = gpu_check("baseline", steps=1, warmup=1, slice_tokens=512, judge=True)
    c = _by_name(rep)
    assert not rep["dry"] and not rep["ok"]
    assert c["attention_dense"]["status"] == "fail" and c["attention_dense"]["value"] == "sdpa"
    assert c["compile"]["status"] == "fail" and c["bf16_layout"]["status"] == "fail"
    assert c["flash_attention_import"]["status"] == "ok"


def test_cli_writes_json_and_exits_zero_in_dry_mode(tmp_path):
    out = tmp_path / "gc.json"
    proc = subprocess.run([sys.executable, "-m", "golflib.cli", "gpu-check", "--preset", "cpu-tiny", "--steps", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "RESULT: ok (dry)" in proc.stdout
    assert json.loads(out.read_text())["preset"] == "cpu-tiny"
