"""The pre-flight byte budget (issue 11): ``golf budget`` and the line ``golf train`` prints before its first step."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from conftest import REPO
from golflib.workbook.resultfile import load_run_result
from golflib.model.gpt import GPT
from golflib.presets import resolve
from golflib.quant.artifact import encode_artifact
from golflib.quant.export import mixed_state
from golflib.quant.preflight import TRAINED_ROW_STD, gaussian_rows, preflight_budget, preflight_line
from golflib.train import main as train_main


def test_gaussian_rows_replace_exactly_the_per_row_tensors():
    cfg = resolve("pr549", environ={}, scale=0.125)
    own = GPT(cfg.model).state_dict()
    est = gaussian_rows(own, cfg)
    # quantized per row: block matrices and the embedding tables, replaced by N(0, 0.155^2) rows
    w = est["blocks.3.mlp.fc.weight"]
    assert abs(float(w.std()) - TRAINED_ROW_STD) < 0.01 * TRAINED_ROW_STD * 10 and abs(float(w.mean())) < 0.01
    assert not torch.equal(est["tok_emb.weight"], own["tok_emb.weight"])
    # every other float tensor (fp16 passthrough <= KEEP_FLOAT_MAX_NUMEL, control tensors): init + noise of std
    # 0.1·|init| + 0.01, so the standardised difference is N(0, 1)
    kept = [k for k in own if own[k].is_floating_point() and own[k].numel() <= cfg.quant.keep_float_max_numel
            and "blocks" in k and ("scale" in k or "resid_mix" in k)]
    assert "blocks.0.attn_scale" in kept and "blocks.0.resid_mix" in kept
    z = torch.cat([((est[k] - own[k]) / (0.1 * own[k].abs() + 0.01)).flatten() for k in kept])
    assert z.numel() > 500 and 0.9 < float(z.std()) < 1.1 and abs(float(z.mean())) < 0.1


def test_checkpoint_budget_is_the_export_of_that_checkpoint():
    """With the weights given, the pre-flight bytes are exactly the mixed artifact's (same recipe, same codec)."""
    cfg = resolve("pr1394", {"GPTQ_ENABLED": 0}, environ={}, scale=0.125)
    torch.manual_seed(0)
    state = {k: v + 0.02 * torch.randn_like(v) for k, v in GPT(cfg.model).state_dict().items()}
    rep = preflight_budget(cfg, code_bytes=12_345, code_source="test", state=state)
    qs, _ = mixed_state(state, cfg.quant, cfg.model)
    assert rep["weights"] == "checkpoint" and rep["artifact_bytes"] == len(encode_artifact(qs, "brotli+bshf2"))
    assert rep["bytes_total"] == rep["artifact_bytes"] + 12_345 and rep["fits"]
    assert sum(c["bytes"] for c in rep["classes"].values()) + rep["header_bytes"] == rep["artifact_bytes"]
    assert "weights:checkpoint" in preflight_line(rep) and "total:" in preflight_line(rep)
    with pytest.raises(ValueError, match="does not match the configured model"):
        preflight_budget(cfg, code_bytes=0, code_source="test", state={"tok_emb.weight": state["tok_emb.weight"]})


@pytest.mark.slow
def test_golf_budget_cli_with_a_checkpoint(tmp_path):
    cfg_over = {"GPTQ_ENABLED": "0"}
    cfg = resolve("pr414", cfg_over, environ={}, scale=0.125)
    ckpt = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in GPT(cfg.model).state_dict().items()}, str(ckpt))
    args = [sys.executable, "-m", "golflib.cli", "budget", "--preset", "pr414", "--scale", "0.125", "--set",
            "GPTQ_ENABLED=0", "--checkpoint", str(ckpt), "--code-bytes", "70000", "--json"]
    out = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    rep = json.loads(out.stdout)
    assert rep["weights"] == "checkpoint" and rep["codec"] == "zstd" and rep["code_bytes"] == 70_000
    over = subprocess.run(args[:-3] + ["--code-bytes", "15999999"], capture_output=True, text=True, cwd=REPO)
    assert over.returncode == 1 and "OVER" in over.stdout


@pytest.mark.slow
def test_train_refuses_a_recipe_that_cannot_fit(tmp_path, embedded_data):
    """Full-size #287 with the baseline's int8+zlib export instead of its own recipe: ~24.8 MB estimated, refused
    before the first step; the run directory keeps its log."""
    run = tmp_path / "over"
    args = ["--preset", "pr287", "--run-dir", str(run), "--set", "MIXED_EXPORT=0",
            "--set", f"DATA_PATH={embedded_data['data_path']}", "--set",
            f"TOKENIZER_PATH={embedded_data['tokenizer_path']}", "--set", "VAL_MAX_TOKENS=4096",
            "--set", "COUNTED_CODE_BYTES=70000"]
    with pytest.raises(SystemExit, match="pre-flight: .* over the 16,000,000-byte limit"):
        train_main(args)
    log = (run / "train.log").read_text()
    line = next(x for x in log.splitlines() if x.startswith("preflight:budget"))
    assert "codec:zlib" in line and "fits:False" in line
    total = int(line.split("total:")[1].split()[0])
    assert 20_000_000 < total < 30_000_000


@pytest.mark.slow
def test_checkpoint_budget_with_gptq_is_the_runs_own_artifact(quant_run):
    """`golf budget --checkpoint` on a trained run's weights, GPTQ calibrated as the run calibrates (fresh training
    loader, GPTQ_CALIBRATION_BATCHES micro-batches, damping, the head): the bytes of the run's own mixed artifact,
    exactly. The Gaussian-rows estimate of the same config is printed for docs/LOG.md."""
    from safetensors.torch import load_file

    from golflib.config import Config
    from golflib.workbook.quant_cli import checkpoint_hessians

    cfg = Config.from_json_file(quant_run / "config.json")
    result = load_run_result(quant_run)
    state = load_file(str(quant_run / "final_model.safetensors"))
    logs: list[str] = []
    hessians = checkpoint_hessians(cfg, state, log=logs.append)
    assert hessians and any("gptq:calibration source:train batches:8" in x for x in logs)
    rep = preflight_budget(cfg, code_bytes=result.code_bytes, code_source="run", state=state, hessians=hessians)
    mixed = result.artifacts["mixed"].__dict__
    assert rep["gptq"] and rep["artifact_bytes"] == mixed["artifact_bytes"]
    est = preflight_budget(cfg, code_bytes=result.code_bytes, code_source="run")
    print(f"trained {mixed['artifact_bytes']:,} B; gaussian estimate {est['artifact_bytes']:,} B "
          f"({est['artifact_bytes'] / mixed['artifact_bytes'] - 1:+.1%}, band ±{est['band']:.0%}); classes "
          f"trained {rep['classes']}; estimate {est['classes']}")


def test_band_follows_the_recipes_clip_rules():
    """The estimate's band: 7% when (all but <= 1% of) the per-row parameters are SDClip rows with no scale at a
    floor — #1855's 88 absmax attention-gate rows do not count — 15% for #549's search clips with the 1/31 floor."""
    from golflib.quant.preflight import scale_invariant

    bands = {}
    for name in ("pr1855_arch", "pr549"):
        cfg = resolve(name, environ={}, scale=0.25)
        qs, _ = mixed_state(gaussian_rows(GPT(cfg.model).state_dict(), cfg), cfg.quant, cfg.model)
        gates = [k for k, e in qs.meta["tensors"].items() if e.get("kind") == "per_row" and "attn_gate" in k]
        assert bool(gates) == (name == "pr1855_arch")
        bands[name] = scale_invariant(qs)
        assert scale_invariant(qs, tolerance=0.0) is False  # strictly: the gates (#1855) / everything (#549)
    assert bands == {"pr1855_arch": True, "pr549": False}
