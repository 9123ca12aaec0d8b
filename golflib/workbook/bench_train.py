"""``golf bench train``: CPU training throughput (tokens/s) of a preset at a reduced shape.

Times forward + backward + optimizer steps of the real training step (model, Muon/Adam split) on random tokens,
after a warm-up, so it measures compute only (no data loading, no evaluation).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from golflib.model.gpt import GPT, count_params
from golflib.optim.build import build_optimizers
from golflib.presets import resolve
from golflib.workbook.bench import register

REDUCED = {"NUM_LAYERS": 4, "MODEL_DIM": 128, "NUM_HEADS": 4, "NUM_KV_HEADS": 2, "TRAIN_SEQ_LEN": 256}


@register("train")
def bench_train(run_dir: str | None = None, preset: str = "baseline", steps: int = 8, batch_seqs: int = 16,
                overrides: dict | None = None) -> dict[str, Any]:
    """Tokens/s of ``steps`` training steps of ``preset`` at the :data:`REDUCED` shape (plus ``overrides``)."""
    cfg = resolve(preset, {**REDUCED, **(overrides or {})}, environ={})
    torch.manual_seed(0)
    model = GPT(cfg.model)
    opts = build_optimizers(model, cfg.optim, cfg.model.tie_embeddings)
    T = cfg.train.train_seq_len
    x = torch.randint(0, cfg.model.vocab_size, (batch_seqs, T))
    y = torch.randint(0, cfg.model.vocab_size, (batch_seqs, T))

    def step():
        loss = model(x, y)
        loss.backward()
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t0
    return {"preset": preset, "shape": {**REDUCED, **(overrides or {})}, "params": count_params(model),
            "tokens_per_step": batch_seqs * T, "ms_per_step": 1000 * dt / steps,
            "tokens_per_second": batch_seqs * T * steps / dt}
