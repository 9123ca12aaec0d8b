import pytest
import torch

from golflib.optim.averaging import EMA, Averager


def scripted_model(value):
    m = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(value)
    return m


def test_ema_equals_closed_form():
    """θ_ema after steps with weights w_1..w_n = d^n θ_0 + (1-d) Σ_k d^(n-k) w_k."""
    d = 0.9
    m = scripted_model(1.0)
    ema = EMA(m, d)
    seq = [2.0, -1.0, 0.5, 3.0, 4.0]
    for w in seq:
        with torch.no_grad():
            m.weight.fill_(w)
        ema.update(m)
    n = len(seq)
    expected = d ** n * 1.0 + (1 - d) * sum(d ** (n - 1 - k) * w for k, w in enumerate(seq))
    assert ema.state["weight"][0, 0].item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="EMA_DECAY=1.5"):
        EMA(m, 1.5)


def test_foreach_ema_is_bit_identical_to_the_per_tensor_loop_and_tracks_in_place_loads():
    """The captured-list EMA (two _foreach calls over the fp32 entries) gives exactly the records' per-tensor
    ``mul_(d).add_(θ, alpha=1-d)``, for fp32 and bf16 entries, with a non-float buffer copied; weights loaded into
    the model in place (load_state_dict, as the warm-up restore and the loop switch do) are seen."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4))
    m[1].to(torch.bfloat16)
    m.register_buffer("count", torch.zeros(2, dtype=torch.int64))
    d = 0.997
    ema = EMA(m, d)
    ref = {k: v.detach().float().clone() if v.is_floating_point() else v.clone() for k, v in m.state_dict().items()}
    for step in range(5):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p))
            m.count += 1
        if step == 2:
            m.load_state_dict({k: v * 0.5 if v.is_floating_point() else v for k, v in m.state_dict().items()})
        ema.update(m)
        for k, v in m.state_dict().items():
            if v.is_floating_point():
                ref[k].mul_(d).add_(v.detach().float(), alpha=1.0 - d)
            else:
                ref[k].copy_(v)
    assert all(torch.equal(ema.state[k], ref[k]) for k in ref)
    assert ema.state["count"].tolist() == [5, 5] and ema.state["1.weight"].dtype == torch.float32


def test_swa_averages_late_snapshots_and_is_exported():
    m = scripted_model(0.0)
    avg = Averager(m, ema_decay=0.0, swa_every=2, swa_start_lr_mult=0.5)
    taken = []
    for step, (w, mult) in enumerate([(1.0, 1.0), (2.0, 0.9), (3.0, 0.4), (4.0, 0.3), (5.0, 0.2), (6.0, 0.1)], 1):
        with torch.no_grad():
            m.weight.fill_(w)
        if avg.after_step(m, step, mult):
            taken.append(w)
    assert taken == [4.0, 6.0] and avg.swa_started_at == 4  # even steps with mult < 0.5
    assert avg.source == "swa"
    assert avg.export_state(m)["weight"][0, 0].item() == pytest.approx(5.0)


def test_swa_of_ema_and_fallbacks():
    m = scripted_model(0.0)
    avg = Averager(m, ema_decay=0.5, swa_every=1, swa_start_lr_mult=2.0)
    with torch.no_grad():
        m.weight.fill_(2.0)
    avg.after_step(m, 1, 1.0)  # ema = 1.0, snapshot 1.0
    with torch.no_grad():
        m.weight.fill_(4.0)
    avg.after_step(m, 2, 1.0)  # ema = 2.5, snapshot 2.5
    assert avg.export_state(m)["weight"][0, 0].item() == pytest.approx(1.75)
    only_ema = Averager(m, ema_decay=0.5)
    assert only_ema.source == "ema"
    one = Averager(m, ema_decay=0.0, swa_every=1, swa_start_lr_mult=2.0)
    one.after_step(m, 1, 1.0)  # a single snapshot is not applied (#461: swa_count > 1)
    assert one.swa.count == 1 and one.source == "live"
    assert Averager(m).source == "live"
    assert torch.equal(Averager(m).export_state(m)["weight"], m.weight.detach())


def test_bench_ema_counts_the_ops_of_both_updates(tmp_path):
    """golf bench ema: the per-tensor loop dispatches mul_ + add_ per float tensor, the captured EMA two foreach ops;
    both give the same state (a shrunken baseline to keep it quick)."""
    import json

    from golflib.workbook.bench import run_bench

    out = tmp_path / "ema.json"
    r = run_bench("ema", out=str(out), steps=2, overrides={"NUM_LAYERS": 2, "MODEL_DIM": 64, "NUM_HEADS": 2,
                                                           "NUM_KV_HEADS": 1})
    assert r["equal"] and json.loads(out.read_text())["op_reduction"] == r["op_reduction"]
    before, after = r["per_tensor_state_dict"], r["foreach_captured"]
    n = r["tensors"]  # every tensor of this model is fp32; state_dict() detaches each (a view, no kernel)
    assert before["ops"] == {"detach": 2 * n, "mul_": n, "add_": n} and before["launching_ops_per_update"] == 2 * n
    assert after["ops"] == {"_foreach_mul_": 1, "_foreach_add_": 1} and r["op_reduction"] == n
