"""Named presets: dicts of config overrides, each documented with the record or PR it reproduces.

``resolve(preset, overrides, environ)`` applies, in order: field defaults → the preset → environment variables →
explicit overrides, and returns a frozen :class:`golflib.config.Config`.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from golflib.config import Config
from golflib.settings.base import ConfigError

PRESETS: dict[str, Callable[[], dict[str, Any]]] = {}

EMBEDDED_DATA = {
    "DATA_PATH": "./data/datasets/wikivital_sp1024",
    "TOKENIZER_PATH": "./data/tokenizers/wikivital_1024_bpe.model",
}
# `golf data prepare --caseops`: the embedded corpus through the CaseOps transform, with its val byte sidecar
EMBEDDED_CASEOPS_DATA = {
    "DATA_PATH": "./data/datasets/wikivital_sp1024_caseops",
    "TOKENIZER_PATH": "./data/tokenizers/wikivital_1024_bpe_caseops.model",
}


# The record each preset reproduces and the val_bpb its PR published (3-seed mean; None: no legal published score —
# cpu-tiny is golflib's own, #1487's seed used pre-quantization TTT on val). README.md's preset table shows the same.
RECORDS: dict[str, tuple[str, float | None]] = {
    "baseline": ("2026-03-17 naive baseline", 1.2244), "cpu-tiny": ("golflib's CPU demo", None),
    "pr287": ("#287", 1.1271), "pr414": ("#414", 1.1233), "pr461": ("#461 (seed)", 1.1446),
    "pr549": ("#549", 1.1194), "pr1019": ("#1019", 1.1147), "pr1394": ("#1394", 1.0856),
    "pr1487_arch": ("#1487 (seed)", None), "pr1855_arch": ("#1855 without CaseOps", 1.0611),
    "pr1855": ("#1855", 1.0611),
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
    Also writes the records' format next to the int8 artifact — int6 matrices / int8 embedding, SDClip, GPTQ
    calibrated on 8 training batches inside the budget (15 s reserve), context-range-coded (``MIXED_EXPORT``) — and
    scores it (sliding window, TTT, n-gram), as a submission would. Tensors of <= 4,096 elements (65,536 scaled by
    the width², as ``--scale`` does) pass through as fp16.
    After the round trip it runs two legal TTT kinds (~1 min each on 2 cores): chunked score-first SGD TTT (lr 0.05,
    1 epoch, 2 blocks frozen, 8,192-token chunks) and per-document LoRA TTT (rank 8, lr 0.01, 64-token chunks).
    Then the normalised n-gram mixer (exact counts of orders 2-7, Witten-Bell, fixed α 0.1, causal tilt β 2) on
    sliding-window eval and after chunked TTT (~1.5 min together; settings from notebooks/40_ngram on a 180 s run).
    Not a record; used by ``golf demo`` and the tests.
    """
    return {
        **EMBEDDED_DATA,
        "NUM_LAYERS": 4, "MODEL_DIM": 128, "NUM_HEADS": 4, "NUM_KV_HEADS": 2, "MLP_MULT": 2.0,
        "TRAIN_SEQ_LEN": 256, "TRAIN_BATCH_TOKENS": 8192, "GLOBAL_MICROBATCHES": 2, "WARMUP_STEPS": 0,
        "MAX_WALLCLOCK_SECONDS": 420.0, "WARMDOWN_ITERS": 300, "MUON_MOMENTUM_WARMUP_STEPS": 100,
        "VAL_LOSS_EVERY": 100, "TRAIN_LOG_EVERY": 25, "VAL_BATCH_SIZE": 32768,
        "EVAL_SEQ_LEN": 256, "EVAL_STRIDE": 64, "EVAL_BATCH_SEQS": 64,
        "MIXED_EXPORT": True, "GPTQ_CALIBRATION_BATCHES": 8, "GPTQ_RESERVE_SECONDS": 15.0,  # + int6 GPTQ entropy
        "KEEP_FLOAT_MAX_NUMEL": 4096,  # the baseline's 65,536 scaled by (128/512)²: block matrices are quantized
        # legal score-first TTT after the round trip (chosen by notebooks/20_ttt_sweep on a briefly trained model)
        "TTT_ENABLED": True, "TTT_KINDS": "chunked,lora", "TTT_LR": 0.05, "TTT_EPOCHS": 1, "TTT_FREEZE_BLOCKS": 2,
        "TTT_CHUNK_TOKENS": 8192, "TTT_LORA_RANK": 8, "TTT_LORA_LR": 0.01, "TTT_CHUNK_SIZE": 64, "TTT_BATCH_SIZE": 16,
        # eval-time n-gram mixing, normalised (golflib.eval.ngram), on the model alone and after chunked TTT
        "NGRAM_ENABLED": True, "NGRAM_PROTOCOLS": "sliding,chunked", "NGRAM_ALPHA_SCHEDULE": "fixed",
        "NGRAM_ALPHA": 0.1, "NGRAM_TILT_BETA": 2.0,
    }


SP8192_DATA = {
    "DATA_PATH": "./data/datasets/fineweb10B_sp8192",
    "TOKENIZER_PATH": "./data/tokenizers/fineweb_8192_bpe.model",
    "VOCAB_SIZE": 8192,
}
# #1729's CaseOps export (`golf data fetch sp8192_lossless_caps_caseops_v1_reserved --repo-id
# romeerp/parameter-golf-caseops-v1`): tokens of the transformed text plus the val byte sidecar, which is required
SP8192_CASEOPS_DATA = {
    "DATA_PATH": "./data/datasets/fineweb10B_sp8192_lossless_caps_caseops_v1_reserved",
    "TOKENIZER_PATH": "./data/tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model",
    "VOCAB_SIZE": 8192, "CASEOPS_ENABLED": True,
}

# Shared by the #287 → #1019 lineage (11 layers, seq 2048, 786,432 tokens/step, int6 era), as their code has it.
_LINEAGE_287 = {
    "NUM_LAYERS": 11, "MLP_MULT": 3.0, "TRAIN_SEQ_LEN": 2048, "TRAIN_BATCH_TOKENS": 786_432, "EVAL_SEQ_LEN": 2048,
    "EVAL_STRIDE": 64, "BIGRAM_VOCAB_SIZE": 2048, "BIGRAM_DIM": 128, "SMEAR_GATE": 2, "SMEAR_BOS_MASK": False,
    "ORTHO_INIT": True,
    # the #287-#1019 Rotary hard-codes train_seq_len=1024, so the NTK rescale is active at 2048 (SPEC §3.A2)
    "ROPE_TRAIN_SEQ_LEN": 1024, "EMA_DECAY": 0.997, "MUON_WD": 0.04, "ADAM_WD": 0.04, "EMBED_WD": 0.04,
    "MATRIX_LR": 0.025, "SCALAR_LR": 0.025, "TIED_EMBED_LR": 0.035, "MUON_MOMENTUM": 0.99,
    "MUON_MOMENTUM_WARMUP_START": 0.92, "MUON_MOMENTUM_WARMUP_STEPS": 1500, "GRAD_CLIP_NORM": 0.3,
    # the pre-#1218 sliding window set: every start < N, so the last stride's targets are scored again (SPEC §3.A1)
    "EVAL_WINDOWS": "legacy",
    # their export: int6 per-row matrices with the 1/31 scale floor, the baseline int8 rule for the embedding tables
    # (row percentile 99.99984, values clipped, codes from the fp32 scale, floor 1/127), fp16 for every float tensor
    # of <= 65,536 elements (bigram.proj and ve_shared.proj included), no GPTQ, a byte codec
    "MIXED_EXPORT": True, "GPTQ_ENABLED": False, "MATRIX_BITS": 6, "EMBED_BITS": 8, "LEGACY_SCALE_FLOOR": True,
    "EMBED_CLIP_RULE": "percentile", "EMBED_SCALE_ROUNDING": "fp32", "KEEP_FLOAT_MAX_NUMEL": 65_536,
    # their late QAT (where on): the CastedLinear class flag, int6 rowmax/31 floored at 1/31, training forwards only
    "QAT_CLIP": "rowmax_floor",
}


@preset("pr287")
def pr287() -> dict[str, Any]:
    """#287 (jfprincz) [R:2026-03-20_11L_XSA4_EMA_Int6_MLP3x_WD04_1.1271], as run (its README command over the
    script's 9-layer defaults): 11L × 512, MLP 3× relu², XSA on the last 4 layers, EMA 0.997, SmearGate v2 without a
    BOS mask, BigramHash 2048×128 (XOR hash), OrthoInit (bigram.proj orthogonal ×1/√22), Muon/AdamW WD 0.04,
    warmdown 3000 iters, seq 2048, no late QAT. Export: int6 absmax per row (1/31 floor) for attention and MLP, the
    baseline int8 rule for tok_emb and bigram.embed, fp16 for tensors of <= 65,536 elements, zstd-22; scored by the
    stride-64 sliding window with the pre-#1218 window set (``EVAL_WINDOWS=legacy``: the tail re-scored, declared
    in the ledger). golflib's fix of the BOS leak stays available: ``SMEAR_BOS_MASK=1``.
    Published: sliding s64 val_bpb 1.12707468 (best seed; 3-seed mean 1.12801921), 26,829,913 parameters,
    15,534,645 bytes (model 15,468,512 + code 66,133).
    """
    return {**_LINEAGE_287, "XSA_LAST_N": 4, "WARMDOWN_ITERS": 3000, "ITERATIONS": 9000, "QUANT_CLIP_RULE": "absmax",
            "MIXED_CODEC": "zstd", "VAL_LOSS_EVERY": 0}


@preset("pr414")
def pr414() -> dict[str, Any]:
    """#414 (signalrush) [R:2026-03-22_11L_EMA_GPTQ-lite_warmdown3500_QAT015_1.1233]: #287 + partial RoPE 16/64,
    LN scale, VE128 on layers 9-10 (ve_shared.proj orthogonal ×1/√22; both projections in Muon), late QAT at LR
    multiplier 0.15 (every CastedLinear, training forwards only, int6 rowmax/31 floored at 1/31), warmdown 3500,
    20,000 iterations under the 600 s cap. Export: "GPTQ-lite" int6 — one clip percentile per tensor from {99.9,
    99.95, 99.99, 99.999, 100} by whole-tensor MSE (``QUANT_CLIP_RULE=search``; its README's "per row" is not
    what the code does), 1/31 floor — the baseline int8 rule for the three tables, fp16 below 65,536 elements,
    zstd-22; legacy sliding window. (Its tight SWA is accumulated but never applied, so it is not enabled here —
    SPEC trap 3. Its three seed logs show no recompile stall when QAT switched on: under its torch.compile the
    class flag was most likely constant-folded, so the published runs probably trained without QAT —
    ``LATE_QAT_THRESHOLD=0`` reproduces that; the preset reproduces the code.)
    Published: sliding val_bpb 1.12278022 (seed 1337; mean 1.12331641), 26,993,756 parameters, 15,555,017 bytes.
    """
    return {**_LINEAGE_287, "XSA_LAST_N": 4, "ROPE_DIMS": 16, "LN_SCALE": True, "VE_ENABLED": True, "VE_DIM": 128,
            "VE_LAYERS": "9,10", "LATE_QAT_THRESHOLD": 0.15, "WARMDOWN_ITERS": 3500, "ITERATIONS": 20000,
            "VAL_LOSS_EVERY": 4000, "TRAIN_LOG_EVERY": 500, "QUANT_CLIP_RULE": "search", "MIXED_CODEC": "zstd"}


@preset("pr461")
def pr461() -> dict[str, Any]:
    """Seed #461 (Christopher-Lee-McClendon) [records/track_non_record_16mb/2026-03-22_11L_VE128_PartialRoPE_LegalTTT]:
    11 logical layers over 10 unique cores (layer 10 reuses core 0, its grads ×1/2), partial RoPE 16/64, VE128 on
    layers 9-10, LN scale, XSA on the last 4 cores, BigramHash 2048, SmearGate v2 without a BOS mask, U-Net skips,
    SWA (every 50 steps once the LR multiplier < 0.2; applied), late QAT at 0.1 switched on after the crossing step's
    backward, cleared before the export; 5,200 iterations without a wall-clock cap (4×A100). Export (its own):
    3% magnitude pruning of the 2-D tensors over 65,536 elements, int6 absmax (attention, bigram, projections) /
    int5 absmax (MLP) with fp16 scales floored at the smallest normal fp16, int8 percentile for ve_shared.embed,
    fp16 for tok_emb, core 2's c_k and every tensor <= 8,192 elements, zstd-22. Scored by its score-first chunked
    TTT over the #461 window set (``legacy_stride``): lr 0.002 cosine over 32,768-token chunks, 3 epochs, SGD
    momentum 0.9, first 2 blocks frozen (its final log line is labelled ``final_int6_roundtrip_exact``).
    Published: val_bpb 1.14458409 (after legal TTT; pre-TTT 1.1611 = the live weights at step 5,200), 24,634,452
    parameters, 14,789,419 bytes (model 14,717,713 + code 71,706). (Its README's d=768 is wrong: the code and the
    count say 512.)
    """
    f16n = "+floor=6.103515625e-05"  # the smallest normal fp16: #461's absmax scales are floored there after rounding
    return {**_LINEAGE_287, "UNIQUE_LAYERS": 10, "XSA_LAST_N": 4, "ROPE_DIMS": 16, "LN_SCALE": True,
            "VE_ENABLED": True, "VE_DIM": 128, "VE_LAYERS": "9,10", "EMA_DECAY": 0.0, "SWA_EVERY": 50,
            "SWA_START_FRAC": 0.2, "LATE_QAT_THRESHOLD": 0.1, "LATE_QAT_AFTER_BACKWARD": True, "ADAM_WD": 0.01,
            "EMBED_WD": 0.01, "MAX_WALLCLOCK_SECONDS": 0.0, "ITERATIONS": 5200, "WARMDOWN_ITERS": 3000,
            "VAL_LOSS_EVERY": 500, "TRAIN_LOG_EVERY": 100, "SEED": 42, "EVAL_WINDOWS": "legacy_stride",
            "EVAL_BATCH_SEQS": 64,
            "KEEP_FLOAT_MAX_NUMEL": 8192, "QUANT_CLIP_RULE": "absmax", "ATTN_BITS": 6, "MLP_BITS": 5,
            "LEGACY_SCALE_FLOOR": False, "EMBED_CLIP_RULE": "", "EMBED_SCALE_ROUNDING": "fp16",
            "PRUNE_MAGNITUDE_FRAC": 0.03, "PRUNE_MAGNITUDE_MIN_NUMEL": 65_536, "MIXED_CODEC": "zstd",
            "QUANT_OVERRIDES": ",".join(("tok_emb=fp16", "blocks.2.attn.c_k=fp16", ".mlp.=int5:absmax" + f16n,
                                         "bigram=int6:absmax" + f16n, ".attn.=int6:absmax" + f16n,
                                         ".proj.=int6:absmax" + f16n,
                                         "ve_shared.embed=int8:percentile:99.99984+floor+fp32")),
            "TTT_ENABLED": True, "TTT_KINDS": "chunked", "TTT_FREEZE_BLOCKS": 2}


@preset("pr549")
def pr549() -> dict[str, Any]:
    """#549 (abaybektursun) [R:2026-03-23_LeakyReLU_LegalTTT_ParallelMuon], as run (README command): #414 with
    LeakyReLU(0.5)², BigramHash 1536×128, 9,000 iterations. Its parameter banks (#399) change three things that are
    kept here: the block Q/K/V/MLP-up matrices are orthogonal at any shape (``ORTHO_INIT_BANKED``), Muon keeps
    its momentum in bf16 (``MUON_BANKED``), and bigram.proj / ve_shared.proj are orthogonal with gain 1 (no
    1/√(2L)); those two projections train in the scalar AdamW group (``EMBED_PROJ_OPTIMIZER=adam``) and are the
    only fake-quantized layers of its late QAT (``LATE_QAT_MODULES``), which stays on for the TTT steps (its class
    flag is never cleared). Parallel Muon itself (sharded reduce-scatter, all-gather) is a systems change not
    reproduced: the same per-matrix math. Export: GPTQ-lite int6 per tensor, the baseline int8 rule for the three
    tables, fp16 below 65,536 elements, lzma preset 6. Scored by score-first SGD TTT (lr 0.002, 3 epochs,
    32,768-token chunks, freeze 0) over the ``legacy_stride`` window set.
    Published: legal TTT val_bpb 1.11922988 (seed 1337; mean 1.11937967), 26,928,220 parameters,
    15,977,386 bytes (seed 1337: model 15,887,928 + code 89,458).
    """
    return {**pr414(), "MLP_ACTIVATION": "leaky_relu_sq", "LEAKY_RELU_SLOPE": 0.5, "BIGRAM_VOCAB_SIZE": 1536,
            "ITERATIONS": 9000, "ORTHO_INIT_BANKED": True, "MUON_BANKED": True, "ORTHO_PROJ_SCALE": False,
            "EMBED_PROJ_OPTIMIZER": "adam",
            "LATE_QAT_MODULES": "bigram.proj,ve_shared.proj", "LATE_QAT_IN_TTT": True, "MIXED_CODEC": "lzma6",
            "TTT_ENABLED": True, "TTT_KINDS": "chunked", "TTT_FREEZE_BLOCKS": 0, "TTT_WINDOWS": "legacy_stride"}


@preset("pr1019")
def pr1019() -> dict[str, Any]:
    """#1019 (abaybektursun) [R:2026-03-25_ValCalib_GPTQ_XSA_BigramHash3072]: #549's model with XSA on all 11 layers,
    BigramHash 3072×112, warmdown 4000, 20,000 iterations under the cap, no TTT. Export: full-Hessian GPTQ int6 on AR
    self-generated calibration (64 sequences × 2048 tokens, temperature 0.8, Hessians of ``seq[:, :-1]`` damped by
    0.01 at collection and by 0.01 again in GPTQ), each candidate clip percentile a full GPTQ pass (per tensor, min
    weight MSE), the three tables by the baseline int8 rule without GPTQ, fp16 below 65,536 elements, ±1 pruning to
    the byte target, lzma preset 9. The record targets ``TARGET_MB·1024·1024`` = 16,672,358 bytes (SPEC trap 7);
    this preset prunes to the decimal limit, 16,000,000 (never binding in the published seeds: 15.13 MiB before
    pruning). Legacy sliding window.
    Published: sliding val_bpb 1.11508120 (seed 314; mean 1.11473509), 27,067,484 parameters, 15,863,278 bytes.
    """
    return {**pr549(), "XSA_LAST_N": 11, "BIGRAM_VOCAB_SIZE": 3072, "BIGRAM_DIM": 112, "WARMDOWN_ITERS": 4000,
            "ITERATIONS": 20000, "TTT_ENABLED": False, "GPTQ_ENABLED": True, "GPTQ_CALIBRATION": "ar",
            "GPTQ_AR_SEQS": 64, "GPTQ_AR_TEMPERATURE": 0.8, "GPTQ_HESSIAN_DAMP": 0.01, "EMBED_GPTQ": False,
            "MIXED_CODEC": "lzma9", "PRUNE_TARGET_BYTES": 16_000_000, "PRUNE_RULE": "search"}


_LINEAGE_1394 = {
    **SP8192_DATA, "NUM_LAYERS": 11, "MLP_MULT": 4.0, "MLP_ACTIVATION": "leaky_relu_sq", "XSA_LAST_N": 11,
    "ROPE_DIMS": 16, "LN_SCALE": True, "SKIP_GATES_ENABLED": True, "ORTHO_INIT": True, "TRAIN_SEQ_LEN": 2048,
    "TRAIN_BATCH_TOKENS": 786_432, "EVAL_SEQ_LEN": 2048, "EVAL_STRIDE": 64, "TIED_EMBED_LR": 0.03,
    "MATRIX_LR": 0.02, "SCALAR_LR": 0.02, "MUON_MOMENTUM": 0.99, "MUON_MOMENTUM_WARMUP_START": 0.92,
    "MUON_MOMENTUM_WARMUP_STEPS": 1500, "MUON_ROW_NORMALIZE": True, "ADAM_WD": 0.02, "MUON_WD": 0.085,
    "EMBED_WD": 0.085, "GRAD_CLIP_NORM": 0.3, "WARMDOWN_FRAC": 0.667, "EMA_DECAY": 0.997, "VAL_LOSS_EVERY": 4000,
    "TRAIN_LOG_EVERY": 500,
    # the SDClip export (#1394 on): GPTQ int6 matrices k 12.85, GPTQ int8 embedding k 20 on the final-norm Hessian,
    # fp16 below 65,536 elements, Hessians of each rank's own batches (rank 0's make the artifact)
    "MIXED_EXPORT": True, "MATRIX_BITS": 6, "EMBED_BITS": 8, "QUANT_CLIP_RULE": "sdclip", "MATRIX_CLIP_SIGMAS": 12.85,
    "EMBED_CLIP_SIGMAS": 20.0, "KEEP_FLOAT_MAX_NUMEL": 65_536, "GPTQ_HESSIAN_ALLREDUCE": False,
}


@preset("pr1394")
def pr1394() -> dict[str, Any]:
    """#1394 (clarkkev) [R:2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2]: sp8192, 11L × 512, MLP 4× LeakyReLU²,
    XSA all, partial RoPE 16, LN scale, QK gain 4.0, sigmoid skip gates, layers 4-5 looped twice more (15 virtual)
    from 50% of training, MuonEq-R, WD 0.085, fractional warmdown 0.667, EMA 0.997, the shuffled-sequence loader
    (seeded by the rank). Export: GPTQ on 64 training batches (12 s reserved inside the 600 s), int6 SDClip
    k=12.85 + int8 embedding k=20 (GPTQ on the final-norm Hessian), byte-shuffle (BSHF, stride 2) + brotli-11.
    Published: sliding val_bpb 1.08554182 (seed 1337; 5-seed mean 1.08563), 35,943,512 parameters,
    15,984,924 bytes (model 15,969,408 + code 15,516 compressed).
    """
    return {**_LINEAGE_1394, "QK_GAIN_INIT": 4.0, "NUM_LOOPS": 2, "LOOP_START": 4, "LOOP_END": 5,
            "ENABLE_LOOPING_AT": "0.5", "TRAIN_LOADER": "shuffled", "ROPE_TRAIN_SEQ_LEN": 2048,
            "GPTQ_CALIBRATION_BATCHES": 64, "GPTQ_RESERVE_SECONDS": 12.0, "MIXED_CODEC": "brotli+bshf2"}


@preset("pr1487_arch")
def pr1487_arch() -> dict[str, Any]:
    """Seed #1487 (ndokutovich, closed) [R:2026-04-09_SP8192_Recur345_Par7_EMA_QK525_PreQuantTTT10] — architecture,
    training and export only: sp8192, 11L, MLP 4× LeakyReLU², XSA all, partial RoPE 16, LN scale, QK gain 5.25 (its
    run command), VE128 on 9-10 (ve_shared.proj orthogonal, gain 1), skip gates sized from the physical stack (5),
    one extra pass over layers 3,4,5 (14 virtual) from step 3000, independent attention/MLP lanes from layer 7
    merged by a learned scalar (skips popped after the lanes start have no effect, as in the record), MuonEq-R,
    WD 0.095, EMA 0.9965, warmdown 0.667, #1487's coprime-stride loader. Export: GPTQ int6 SDClip 12.85 with the
    1/31 floor on 64 batches (10 s reserve), int8 SDClip-20 embedding without GPTQ (fp32-scale codes), fp16 below
    65,536 elements, one-shot ±1 pruning of 8× the excess over 16,000,000, BSHF + brotli. Its pre-quant TTT on the
    validation tokens (illegal, SPEC §4.6) is NOT part of this preset.
    Published (with the illegal TTT): sliding val_bpb 1.05980538 (seed 1337), 37,022,812 parameters,
    15,953,504 bytes (log; README says 15,954,178).
    """
    return {**_LINEAGE_1394, "QK_GAIN_INIT": 5.25, "VE_ENABLED": True, "VE_DIM": 128, "VE_LAYERS": "9,10",
            "RECUR_LAYERS": "3,4,5", "RECUR_START_STEP": 3000, "PARALLEL_RESIDUAL": "merge",
            "PARALLEL_START_LAYER": 7, "SKIP_SIZING": "physical", "MATRIX_LR": 0.022, "MUON_WD": 0.095,
            "EMBED_WD": 0.095, "EMA_DECAY": 0.9965, "TRAIN_LOADER": "coprime", "ORTHO_PROJ_SCALE": False,
            "LEGACY_SCALE_FLOOR": True, "EMBED_GPTQ": False, "EMBED_SCALE_ROUNDING": "fp32",
            "GPTQ_CALIBRATION_BATCHES": 64, "GPTQ_RESERVE_SECONDS": 10.0, "PRUNE_TARGET_BYTES": 16_000_000,
            "PRUNE_RULE": "oneshot", "MIXED_CODEC": "brotli+bshf2"}


@preset("pr1855_arch")
def pr1855_arch() -> dict[str, Any]:
    """#1855 (codemath3000), the top stack [R:2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611]
    (SPEC §6.1), as run (its seed logs' hyperparameters; the script's defaults differ), without CaseOps (the
    ``pr1855`` preset is the record with it): sp8192,
    11L × 512, MLP 4× LeakyReLU², XSA all, partial RoPE 16, LN scale, QK gain 5.0, SmearGate v3 with BOS mask,
    sparse attention gate (window 12, κ 0.5), sigmoid skip gates, layers 3-5 looped twice more (17 virtual) from
    35%, routed two-lane parallel residuals from layer 8 (lanes split before the U-Net skip, which feeds lane 0;
    mean of lanes), parameter banks (block matrices orthogonal at any shape, bf16 Muon momentum), Polar Express +
    MuonEq-R Muon (lr
    0.026, momentum 0.97, WD 0.095), AdamW β2 0.99, warmdown 0.85 to MIN_LR 0.1, EMA 0.9965, document packing (one
    flat row per rank, documents cut at every BOS and every TRAIN_SEQ_LEN from their start). Export: GPTQ on 16
    batches of a rank-seeded shuffled loader with dense attention, rank-local Hessians, int6 SDClip (MLP k 11.5,
    attention 13), int7 embedding (k 14), int8 gates, LQER asym rank 4 on the top 3 (plain factors). Its per-group
    lrzip codec is a later issue (19): the preset codes with golflib's entropy coder (brotli, the record's own
    non-lrzip path, comes to ~150 KB more and over the limit at full size). Its GPTQ reserve is 0.5 s, with which
    calibration ended after 600 s (SPEC §3.B5; #1868's compliance rerun used 8 s at no cost):
    ``--set GPTQ_RESERVE_SECONDS=8`` for a compliant run. Scored: the doc-isolated standard eval
    (``EVAL_DOC_ISOLATED``), no sliding window, phased TTT (SPEC §6.1: 2,500 prefix docs in 3 phases, LoRA rank 80,
    α 144, warm A, fresh adapters per phase and short batch, chunk 48, a document's last chunk scored in the window
    ending at its end, Adam lr 1e-4 β (0, 0.99) wd 0.5, global SGD lr 0.001 momentum 0.9 on the shortest scored
    documents; log line ``quantized_ttt_phased_exact``).
    Published (with CaseOps and phased TTT): val_bpb 1.05989454 (seed 42; mean 1.06107587), 35,945,671 parameters,
    15,897,259 bytes (seed 42).
    """
    return {**_LINEAGE_1394, "QK_GAIN_INIT": 5.0, "SMEAR_GATE": 3, "GATE_WINDOW": 12, "ATTN_GATE": "sparse",
            "SPARSE_ATTN_GATE_SCALE": 0.5, "NUM_LOOPS": 2, "LOOP_START": 3, "LOOP_END": 5,
            "ENABLE_LOOPING_AT": "0.35", "PARALLEL_RESIDUAL": "routed", "PARALLEL_START_LAYER": 8,
            "PARALLEL_FINAL_LANE": "mean", "ORTHO_INIT_BANKED": True, "MUON_BANKED": True,
            "MUON_NS_COEFFS": "polar_express",
            "MUON_WD": 0.095, "MUON_MOMENTUM": 0.97, "MATRIX_LR": 0.026, "EMBED_WD": 0.085, "BETA2": 0.99,
            "WARMDOWN_FRAC": 0.85, "MIN_LR": 0.1, "EMA_DECAY": 0.9965, "TRAIN_LOADER": "packed", "VAL_LOSS_EVERY": 0,
            "EVAL_STRIDE": 0, "EVAL_DOC_ISOLATED": True,
            "EMBED_BITS": 7, "EMBED_CLIP_SIGMAS": 14.0, "ATTN_CLIP_SIGMAS": 13.0, "MLP_CLIP_SIGMAS": 11.5,
            "GATED_ATTN_QUANT_GATE": True, "LQER_ENABLED": True, "LQER_FACTORS": "plain",
            "GPTQ_CALIBRATION_BATCHES": 16, "GPTQ_RESERVE_SECONDS": 0.5, "GPTQ_CALIB_LOADER": "shuffled",
            "GPTQ_CALIB_DENSE": True, "MIXED_CODEC": "entropy",
            "TTT_ENABLED": True, "TTT_KINDS": "phased", "TTT_LORA_RANK": 80, "TTT_LORA_ALPHA": 144.0,
            "TTT_WARM_START_A": True, "TTT_CHUNK_SIZE": 48, "TTT_LORA_LR": 1e-4, "TTT_BETA1": 0.0, "TTT_BETA2": 0.99,
            "TTT_WEIGHT_DECAY": 0.5, "PHASED_TTT_PREFIX_DOCS": 2500, "PHASED_TTT_NUM_PHASES": 3,
            "GLOBAL_TTT_LR": 0.001, "GLOBAL_TTT_MOMENTUM": 0.9, "TTT_LORA_ADAPTERS": "per_slot",
            "TTT_LORA_LAST_WINDOW": "doc_end"}


@preset("pr1855")
def pr1855() -> dict[str, Any]:
    """#1855 as submitted: ``pr1855_arch`` on #1729's CaseOps data (SPEC §3.F3) — sp8192 tokens of the
    case-transformed text (TITLE / ALLCAPS / CAPNEXT / ESC as user-defined pieces), scored in original UTF-8 bytes
    through the val byte sidecar (``CASEOPS_ENABLED``: a dataset without one is an error; log line
    ``val_bpb:byte_sidecar:enabled``). ``--scale`` runs it on the embedded corpus's CaseOps export
    (``golf data prepare --caseops``).
    Published: val_bpb 1.05989454 (seed 42; mean 1.06107587), 35,945,671 parameters, 15,897,259 bytes (seed 42).
    """
    return {**pr1855_arch(), **SP8192_CASEOPS_DATA}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset_overrides(name: str) -> dict[str, Any]:
    """The override dict of a preset; raises :class:`ConfigError` listing the known presets."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    return dict(PRESETS[name]())


def scale_overrides(cfg: Config, scale: float) -> dict[str, Any]:
    """Overrides that shrink a resolved config to ``scale`` × its width while keeping its structure (layers, loop
    ranges, XSA/VE/parallel layer indices, every technique flag, the TTT kinds) — so any preset trains on CPU in
    seconds.

    ``scale`` in (0, 1]: ``MODEL_DIM`` → a multiple of 16 near ``scale·MODEL_DIM`` (heads halved until head_dim
    ≥ 8, GQA ratio kept where possible), vocab 1024 on the embedded corpus (its CaseOps export when
    ``CASEOPS_ENABLED``), seq 128, 2,048 tokens/step, table
    widths capped (``VE_DIM`` scaled, so it stays below the KV width as at full size), the size thresholds
    ``ORTHO_INIT_MIN_DIM`` (× scale), ``KEEP_FLOAT_MAX_NUMEL`` and ``PRUNE_MAGNITUDE_MIN_NUMEL`` (× scale²) scaled,
    no wall-clock cap or compile warm-up, 60 iterations; step-based recurrence starts at step 20 and an
    EMA decays at 0.9 (time scales shrink with the run); TTT keeps its kinds and learning rates with chunks of at
    most 1,024 tokens, 8 sequences per step, LoRA rank ≤ 8, 16 docs per LoRA batch and 16 phased prefix docs.
    Raises :class:`ConfigError` for a scale outside (0, 1].
    """
    if not 0 < scale <= 1:
        raise ConfigError(f"scale={scale}: expected a width factor in (0, 1]")
    if scale == 1:
        return {}
    m, t = cfg.model, cfg.train
    dim = max(16, int(round(m.model_dim * scale / 16)) * 16)
    heads = m.num_heads
    while heads > 1 and (dim % heads or dim // heads < 8 or (dim // heads) % 2):
        heads //= 2
    kv = max(1, heads * m.num_kv_heads // m.num_heads)
    while heads % kv:
        kv -= 1
    hd = dim // heads
    seq = 128
    out: dict[str, Any] = {
        **(EMBEDDED_CASEOPS_DATA if cfg.data.caseops_enabled else EMBEDDED_DATA), "VOCAB_SIZE": 1024,
        "MODEL_DIM": dim, "NUM_HEADS": heads, "NUM_KV_HEADS": kv,
        "ROPE_DIMS": min(m.rope_dims, hd) // 2 * 2, "GATE_WINDOW": min(m.gate_window, dim),
        "BIGRAM_VOCAB_SIZE": min(m.bigram_vocab_size, 512), "BIGRAM_DIM": min(m.bigram_dim, 32),
        "VE_DIM": max(8, int(round(m.ve_dim * scale))), "TRAIN_SEQ_LEN": seq, "EVAL_SEQ_LEN": seq,
        "TRAIN_BATCH_TOKENS": 2048,
        "GLOBAL_MICROBATCHES": 2, "VAL_BATCH_SIZE": 16384, "WARMUP_STEPS": 0, "MAX_WALLCLOCK_SECONDS": 0.0,
        "ITERATIONS": 60, "WARMDOWN_ITERS": 20, "MUON_MOMENTUM_WARMUP_STEPS": 20, "VAL_LOSS_EVERY": 0,
        "TRAIN_LOG_EVERY": 10, "EVAL_BATCH_SEQS": 32, "SWA_EVERY": min(t.swa_every, 2),
        # size thresholds follow the width (elements: its square), so every tensor keeps its full-size treatment
        "ORTHO_INIT_MIN_DIM": max(1, int(round(m.ortho_init_min_dim * scale))),
        "KEEP_FLOAT_MAX_NUMEL": int(round(cfg.quant.keep_float_max_numel * scale * scale)),
        "PRUNE_MAGNITUDE_MIN_NUMEL": int(round(cfg.quant.prune_magnitude_min_numel * scale * scale)),
    }
    if m.rope_train_seq_len:  # keep the same train/eval ratio of the NTK rescale
        out["ROPE_TRAIN_SEQ_LEN"] = max(2, m.rope_train_seq_len * seq // max(t.train_seq_len, 1))
    if t.recur_start_step:
        out["RECUR_START_STEP"] = 20
    if t.ema_decay:  # a 0.997 EMA would still be ~85% initial weights after 60 steps
        out["EMA_DECAY"] = 0.9
    tt = cfg.ttt
    if tt.ttt_enabled:  # the val stream of a scaled run is short: chunks small enough that TTT has steps to take
        out.update({"TTT_CHUNK_TOKENS": min(tt.ttt_chunk_tokens, 1024), "TTT_BATCH_SEQS": min(tt.ttt_batch_seqs, 8),
                    "TTT_LORA_RANK": min(tt.ttt_lora_rank, 8), "TTT_BATCH_SIZE": min(tt.ttt_batch_size, 16),
                    "PHASED_TTT_PREFIX_DOCS": min(tt.phased_ttt_prefix_docs, 16),
                    "GLOBAL_TTT_CHUNK_TOKENS": min(tt.global_ttt_chunk_tokens, 1024),
                    "GLOBAL_TTT_BATCH_SEQS": min(tt.global_ttt_batch_seqs, 8)})
        if tt.ttt_lora_alpha:  # keep the LoRA output scale alpha/rank
            out["TTT_LORA_ALPHA"] = tt.ttt_lora_alpha * out["TTT_LORA_RANK"] / tt.ttt_lora_rank
    return out


def resolve(preset_name: str = "baseline", overrides: Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None, base: Config | None = None, scale: float = 1.0) -> Config:
    """defaults (or ``base``) → preset → ``scale`` (see :func:`scale_overrides`) → environment (``os.environ`` unless
    given; pass ``{}`` to ignore it) → ``overrides``."""
    cfg = (base or Config()).replace(preset_overrides(preset_name), source=f"preset {preset_name}")
    cfg = cfg.replace(scale_overrides(cfg, scale), source=f"scale {scale}")
    cfg = cfg.with_env(os.environ if environ is None else environ)
    return cfg.replace(overrides or {}, source="override")
