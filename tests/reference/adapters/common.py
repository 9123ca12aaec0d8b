"""Helpers shared by the adapters."""

from __future__ import annotations

from pathlib import Path

import torch

# The fixture run: 4 optimizer steps of 8 micro-batches x 8 sequences of 128 tokens on one process, the
# iteration-based warmdown long enough that the LR multiplier starts at 0.2 (late QAT thresholds of 0.15 and
# 0.1 switch on during the run), a loss logged every step. Width and vocabulary come from --scale 0.125.
SCALE = 0.125
ITERATIONS = 4
WARMDOWN_ITERS = 20
SEQ = 128
BATCH_TOKENS = 8192
ACCUM = 8

RUN = {
    "ITERATIONS": ITERATIONS, "WARMDOWN_ITERS": WARMDOWN_ITERS, "TRAIN_SEQ_LEN": SEQ, "EVAL_SEQ_LEN": SEQ,
    "TRAIN_BATCH_TOKENS": BATCH_TOKENS, "GLOBAL_MICROBATCHES": ACCUM, "TRAIN_LOG_EVERY": 1, "VAL_LOSS_EVERY": 0,
    "WARMUP_STEPS": 0, "MAX_WALLCLOCK_SECONDS": 0.0, "VAL_BATCH_SIZE": 8192,
}


def size_env(cfg, data: dict) -> dict:
    """The run sizes of ``cfg`` under the env names most records share (their Hyperparameters read these)."""
    m, t = cfg.model, cfg.train
    return {
        "DATA_PATH": data["data_path"], "TOKENIZER_PATH": data["tokenizer_path"], "VOCAB_SIZE": m.vocab_size,
        "NUM_LAYERS": m.num_layers, "MODEL_DIM": m.model_dim, "NUM_HEADS": m.num_heads,
        "NUM_KV_HEADS": m.num_kv_heads, "TRAIN_SEQ_LEN": t.train_seq_len, "TRAIN_BATCH_TOKENS": t.train_batch_tokens,
        "ITERATIONS": t.iterations, "WARMDOWN_ITERS": cfg.optim.warmdown_iters, "WARMUP_STEPS": t.warmup_steps,
        "MAX_WALLCLOCK_SECONDS": t.max_wallclock_seconds, "VAL_LOSS_EVERY": 0, "TRAIN_LOG_EVERY": 1,
        "VAL_BATCH_SIZE": t.val_batch_size, "MUON_MOMENTUM_WARMUP_STEPS": cfg.optim.muon_momentum_warmup_steps,
        "SEED": t.seed,
    }


def load_torch_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)
