"""The training phases one at a time (golflib.trainer): set-up, warm-up and restore, one optimizer step, the timed
loop, and the choice of the exported weights — each checked on its own, on the tiny config."""

from __future__ import annotations

import pytest
import torch

from golflib.runlog import RunLogger
from golflib.runtime import init_runtime
from golflib.trainer import Trainer


def make(tiny_cfg, tmp_path, **overrides) -> Trainer:
    cfg = tiny_cfg.replace({"PREFLIGHT_BUDGET": False, **overrides})
    return Trainer(cfg, init_runtime("cpu"), RunLogger(tmp_path, console=False))


def weights(t: Trainer) -> dict:
    return {k: v.detach().clone() for k, v in t.base_model.state_dict().items()}


def test_setup_reads_the_val_stream_and_splits_the_batch(tiny_cfg, tmp_path):
    t = make(tiny_cfg, tmp_path)
    assert t.accum == 2 and t.val_tokens.numel() - 1 == (8192 - 1) // 64 * 64 and t.cap_ms is None
    log = (tmp_path / "train.log").read_text()
    assert f"model_params:{t.n_params}" in log and "grad_accum_steps:2" in log


def test_warmup_restores_the_initial_weights_and_optimizer(tiny_cfg, tmp_path):
    t = make(tiny_cfg, tmp_path, WARMUP_STEPS=2)
    before = weights(t)
    t.warmup()
    after = weights(t)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(len(o.state) == 0 for o in t.optimizers)  # the warm-up's moment buffers were discarded too
    assert (tmp_path / "train.log").read_text().count("warmup_step:") == 2


def test_one_optimizer_step_moves_the_weights_with_the_warmdown_multiplier(tiny_cfg, tmp_path):
    t = make(tiny_cfg, tmp_path, ITERATIONS=10, WARMDOWN_ITERS=5)
    loader = t.warmup()
    before = weights(t)
    loss, mult, qat = t.optimizer_step(loader, step=7, elapsed_ms=0.0, qat_on=False)
    assert mult == pytest.approx((10 - 7) / 5) and not qat and 5.0 < float(loss) < 8.0  # ≈ ln 1024 at init
    assert any(not torch.equal(before[k], v) for k, v in t.base_model.state_dict().items())
    assert all(g["lr"] == pytest.approx(g["base_lr"] * mult) for o in t.optimizers for g in o.param_groups)


def test_the_loop_runs_its_steps_and_the_average_is_what_is_exported(tiny_cfg, tmp_path):
    t = make(tiny_cfg, tmp_path, ITERATIONS=6, WARMDOWN_ITERS=2, EMA_DECAY=0.5)
    loop = t.run_loop(t.warmup())
    assert loop.step == 6 and loop.train_ms > 0 and loop.last_val is not None and not loop.qat_on
    live = weights(t)
    val = t.finalize_weights(loop)
    assert t.averager.source == "ema" and val is not loop.last_val
    assert any(not torch.equal(live[k], v) for k, v in t.base_model.state_dict().items())  # the EMA was loaded
    assert "export_weights:ema" in (tmp_path / "train.log").read_text()


def test_compiled_warmup_builds_the_late_qat_graph_so_the_timed_loop_never_compiles(tiny_cfg, tmp_path, monkeypatch):
    """Issue 14: switching late QAT on used to recompile forward and backward inside the timed 600 s (35 s on CPU).
    With USE_COMPILE=1 the warm-up also runs the QAT graph, and the loop installs the very same quantizer object
    (golflib.quant.fake_quant.qat_function), so no training step of the timed loop compiles a graph — QAT on
    included. A counting backend stands in for inductor (same dynamo guards, no code generation)."""
    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, **{**kw, "backend": counting}))
    t = make(tiny_cfg, tmp_path, USE_COMPILE="1", WARMUP_STEPS=1, LATE_QAT_THRESHOLD=0.5, ITERATIONS=6,
             WARMDOWN_ITERS=4)
    loader = t.warmup()
    warm = len(graphs)
    assert warm >= 2 and "warmup_step:1/1 late_qat:on" in (tmp_path / "train.log").read_text()
    new_in_steps = []
    step_fn = t.optimizer_step

    def counted_step(*a, **kw):
        n = len(graphs)
        out = step_fn(*a, **kw)
        new_in_steps.append(len(graphs) - n)
        return out

    monkeypatch.setattr(t, "optimizer_step", counted_step)
    loop = t.run_loop(loader)
    assert loop.qat_on and "late_qat:enabled step:5" in (tmp_path / "train.log").read_text()
    assert len(new_in_steps) == 6 and new_in_steps == [0] * 6, new_in_steps
