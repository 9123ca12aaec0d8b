"""Every preset's training forward compiles as ONE graph (issue 14): no graph break in either loop phase, with late
QAT on where the preset turns it on, in the CUDA dtype layout under bf16 autocast (CPU autocast here), with the
packed loader's varlen boundaries where the preset packs documents; and inductor-compiled training equals eager
(loss and every gradient) for ``cpu-tiny`` and the top stack (``pr1855_arch``) at small scale."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from golflib.data.loaders import packed_doc_ids
from golflib.data.varlen import cu_seqlens_padded
from golflib.model.gpt import GPT
from golflib.model.layers import CONTROL_PATTERNS
from golflib.model.recurrence import max_loops
from golflib.presets import PRESETS, resolve
from golflib.quant.fake_quant import set_late_qat
from golflib.runtime import cast_model_for_device, set_precision

SMALL = {"TRAIN_SEQ_LEN": 64, "VOCAB_SIZE": 256, "BIGRAM_VOCAB_SIZE": 0}


def _inputs(cfg, rows: int = 2):
    g = torch.Generator().manual_seed(0)
    t = cfg.train.train_seq_len
    x = torch.randint(2, cfg.model.vocab_size, (rows, t), generator=g)
    y = torch.randint(2, cfg.model.vocab_size, (rows, t), generator=g)
    if cfg.train.train_loader != "packed":
        return (x, y), {}
    x = x.reshape(1, -1)
    x[0, [5, 6, 40, 100]] = cfg.model.bos_id
    ids = packed_doc_ids(x, cfg.model.bos_id, t)
    return (x, y.reshape(1, -1)), dict(doc_ids=ids, cu_seqlens=cu_seqlens_padded(ids), max_seqlen=t)


def _graphs(model, args, kw) -> int:
    """Graphs dynamo captures for one training forward with ``fullgraph=True`` (raises on any graph break)."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm

    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=True, dynamic=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        compiled(*args, **kw)
    return len(graphs)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_training_forward_is_one_graph_in_every_phase(preset):
    cfg = resolve(preset, SMALL, environ={}, scale=0.125)
    torch.manual_seed(0)
    model = GPT(cfg.model)
    set_precision("bf16")
    try:
        cast_model_for_device(model, torch.device("cpu"), CONTROL_PATTERNS)
    finally:
        set_precision("auto")
    args, kw = _inputs(cfg)
    phases = sorted({0, max_loops(cfg.model)})
    qat_modes = (False, True) if cfg.train.late_qat_threshold > 0 else (False,)
    seen = []
    for qat in qat_modes:
        if qat:
            set_late_qat(model, cfg.train.qat_bits, cfg.train.qat_clip, modules=cfg.train.late_qat_modules)
        for k in phases:
            model.set_active_loops(k)
            assert _graphs(model, args, kw) == 1, (preset, k, qat)
            seen.append((k, qat))
    assert len(seen) == len(phases) * len(qat_modes)
    torch._dynamo.reset()


def _loss_and_grads(model, m, args, kw, bf16: bool):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = m(*args, **kw)
    loss.backward()
    return float(loss), {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.slow
@pytest.mark.parametrize("preset,bf16", [("cpu-tiny", False), ("cpu-tiny", True), ("pr1855_arch", False)],
                         ids=["cpu-tiny-fp32", "cpu-tiny-bf16", "pr1855_arch-fp32"])
def test_inductor_compiled_training_equals_eager(preset, bf16):
    """Loss and every gradient of the inductor-compiled model (fullgraph) against eager: in fp32 to rounding
    (the top stack in its looped phase, its largest graph), and in the bf16 CUDA layout under CPU autocast, where
    fusion rounds bf16 intermediates differently, to bf16 accuracy."""
    cfg = resolve(preset, SMALL, environ={}, scale=0.125 if preset != "cpu-tiny" else 1.0)
    torch.manual_seed(0)
    model = GPT(cfg.model)
    for p in model.parameters():  # move off the zero-initialised projections so every path carries signal
        p.data.add_(0.02 * torch.randn_like(p))
    if bf16:
        set_precision("bf16")
        try:
            cast_model_for_device(model, torch.device("cpu"), CONTROL_PATTERNS)
        finally:
            set_precision("auto")
    model.set_active_loops(max_loops(cfg.model))
    args, kw = _inputs(cfg)
    torch._dynamo.reset()
    compiled = torch.compile(model, dynamic=False, fullgraph=True)
    le, ge = _loss_and_grads(model, model, args, kw, bf16)
    lc, gc = _loss_and_grads(model, compiled, args, kw, bf16)
    assert abs(le - lc) <= (2e-3 if bf16 else 1e-5) * abs(le), (le, lc)
    assert ge.keys() == gc.keys() and len(ge) == len(list(model.parameters()))
    worst = 0.0
    for n in ge:
        rel = float((ge[n] - gc[n]).norm() / ge[n].norm().clamp_min(1e-12))
        worst = max(worst, rel)
        if bf16:
            cos = F.cosine_similarity(ge[n].flatten(), gc[n].flatten(), dim=0)
            assert cos > 0.98, (n, float(cos), rel)
        else:
            assert rel < 1e-3, (n, rel)
    torch._dynamo.reset()
