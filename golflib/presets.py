"""Named presets: dicts of config overrides, each documented with the record or PR it reproduces.

``resolve(preset, overrides, environ)`` applies, in order: field defaults → the preset → environment variables →
explicit overrides, and returns a frozen :class:`golflib.config.Config`.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from golflib.config import Config, ConfigError

PRESETS: dict[str, Callable[[], dict[str, Any]]] = {}

EMBEDDED_DATA = {
    "DATA_PATH": "./data/datasets/wikivital_sp1024",
    "TOKENIZER_PATH": "./data/tokenizers/wikivital_1024_bpe.model",
}


def preset(name: str):
    """Register a preset function under ``name``."""

    def deco(fn: Callable[[], dict[str, Any]]):
        PRESETS[name] = fn
        return fn

    return deco


@preset("baseline")
def baseline() -> dict[str, Any]:
    """The official naive baseline ([R:2026-03-17_NaiveBaseline], root ``train_gpt.py``; SPEC §2).

    9 layers × 512, 8 heads / 4 KV heads, MLP 2×, vocab 1024 (FineWeb sp1024), seq 1024, 524,288 tokens/step,
    10-minute cap on 8×H100, int8 + zlib export with the legacy 1/127 scale floor.
    Published: val_bpb 1.22436570 (post-quant), 17,059,912 parameters, 15,863,489 bytes total
    (model 15,815,847 + code 47,642).
    """
    return {"LEGACY_SCALE_FLOOR": True}


@preset("cpu-tiny")
def cpu_tiny() -> dict[str, Any]:
    """A baseline-architecture model that learns in minutes on 2 CPU cores, on the embedded corpus.

    Same code path as ``baseline`` (U-Net GPT, Muon + Adam, wall-clock warmdown, int8 + zlib), smaller shape:
    4 layers × 128, 4 heads / 2 KV heads, seq 256, 8,192 tokens/step, 2 micro-batches per step, no compile warm-up.
    Chosen by equal-wall-clock comparison on 2 CPU cores (150 s each, post-quant val_bpb): 4×128 1.905,
    8×128 2.028, 6×192 2.135, 6×256 2.245 — at this budget more steps beat more parameters.
    After the round trip it runs two legal TTT kinds (~1 min each on 2 cores): chunked score-first SGD TTT (lr 0.05,
    1 epoch, 2 blocks frozen, 8,192-token chunks) and per-document LoRA TTT (rank 8, lr 0.01, 64-token chunks).
    Not a record; used by ``golf demo`` and the tests.
    """
    return {
        **EMBEDDED_DATA,
        "NUM_LAYERS": 4, "MODEL_DIM": 128, "NUM_HEADS": 4, "NUM_KV_HEADS": 2, "MLP_MULT": 2.0,
        "TRAIN_SEQ_LEN": 256, "TRAIN_BATCH_TOKENS": 8192, "GLOBAL_MICROBATCHES": 2, "WARMUP_STEPS": 0,
        "MAX_WALLCLOCK_SECONDS": 420.0, "WARMDOWN_ITERS": 300, "MUON_MOMENTUM_WARMUP_STEPS": 100,
        "VAL_LOSS_EVERY": 100, "TRAIN_LOG_EVERY": 25, "VAL_BATCH_SIZE": 32768,
        "EVAL_SEQ_LEN": 256, "EVAL_STRIDE": 64, "EVAL_BATCH_SEQS": 64,
        # legal score-first TTT after the round trip (chosen by notebooks/20_ttt_sweep on a briefly trained model)
        "TTT_ENABLED": True, "TTT_KINDS": "chunked,lora", "TTT_LR": 0.05, "TTT_EPOCHS": 1, "TTT_FREEZE_BLOCKS": 2,
        "TTT_CHUNK_TOKENS": 8192, "TTT_LORA_RANK": 8, "TTT_LORA_LR": 0.01, "TTT_CHUNK_SIZE": 64, "TTT_BATCH_SIZE": 16,
    }


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset_overrides(name: str) -> dict[str, Any]:
    """The override dict of a preset; raises :class:`ConfigError` listing the known presets."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    return dict(PRESETS[name]())


def resolve(preset_name: str = "baseline", overrides: Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None, base: Config | None = None) -> Config:
    """defaults (or ``base``) → preset → environment (``os.environ`` unless given; pass ``{}`` to ignore it) →
    ``overrides``."""
    cfg = (base or Config()).replace(preset_overrides(preset_name), source=f"preset {preset_name}")
    cfg = cfg.with_env(os.environ if environ is None else environ)
    return cfg.replace(overrides or {}, source="override")
