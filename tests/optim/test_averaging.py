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
