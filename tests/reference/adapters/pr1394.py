"""#1394 (clarkkev): records/track_10min_16mb/2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2.

Its ``train_gpt.py`` is an lzma (raw LZMA2) + base85 self-extracting stub; :func:`decode_source` unpacks it so the
harness can patch and run the real code (identical to the record folder's ``train_gpt_decoded.py``).

Fixture run (4 steps of 8 micro-batches × 8 × 128 tokens, width 64 from ``--scale 0.125``), every feature on with
the record's own recipe: layers 4-5 looped twice more from ENABLE_LOOPING_AT=0.5 (the record default; on at step 2
of 4), fractional warmdown 0.667 (the record default; LR multipliers 1, 1, 0.75, 0.375 — the record has no late QAT),
EMA 0.997 applied at the end, GPTQ int6/int8 + SDClip on 4 calibration micro-batches with byte-shuffle + brotli,
standard and sliding-window (stride 64) scoring of the quantized model. The record has no TTT.

Parameters: golflib's names are the record's (same module tree, no banks), so the mapping is the identity; the
record's ``Rotary.inv_freq`` is a non-persistent buffer and golflib's Rotary has none, so the state dicts agree.
"""

from __future__ import annotations

import base64
import lzma
import re

from reference.adapters.common import ACCUM, RUN, SCALE, load_torch_state, size_env  # noqa: F401

RECORD = "records/track_10min_16mb/2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2"

# The record quantizes (and collects GPTQ Hessians for) only float tensors with more than 65,536 elements — a
# hard-coded size, not an env var. At full width every block matrix (smallest: c_k 256×512 = 131,072) and the
# embedding (8192×512) exceed it and every control tensor is below; at width 64 nothing would (tok_emb is exactly
# 1024×64 = 65,536), so the export would be all-fp16 passthrough. Scaled by the same (64/512)² = 1/64 the threshold
# becomes 1,024: every matrix (smallest c_k 32×64 = 2,048) is GPTQ-quantized again and every control tensor
# (largest skip_weights 7×64 = 448) passes through, as at full size.
QUANT_MIN_NUMEL = 1024
SOURCE_PATCHES = [
    (r"numel\(\)\s*>\s*65536", f"numel()>{QUANT_MIN_NUMEL}"),  # collect_hessians: hooked CastedLinears
    (r"numel\(\)\s*<=\s*65536", f"numel()<={QUANT_MIN_NUMEL}"),  # gptq_mixed_quantize: fp16 passthrough
]

CALIBRATION_BATCHES = 4  # GPTQ calibration micro-batches (record default 64, far longer than this run)
MOMENTUM_WARMUP = 4  # Muon momentum warmup length in steps (record default 1500 of ~4,990): ramps over the run

GOLF_OVERRIDES = {
    **RUN,
    # fields golflib's --scale changes for CPU, restored to the values the record runs with here
    "EMA_DECAY": 0.997,  # the record's own decay (--scale makes it 0.9)
    "MUON_MOMENTUM_WARMUP_STEPS": MOMENTUM_WARMUP,
    # sizes the record run uses
    "GPTQ_CALIBRATION_BATCHES": CALIBRATION_BATCHES,
    # golflib's counterpart of the patched 65,536 threshold (full size 65,536 → 1,024 here, see SOURCE_PATCHES)
    "KEEP_FLOAT_MAX_NUMEL": QUANT_MIN_NUMEL,
}


def decode_source(src: str) -> str:
    """The code inside the ``exec(lzma.decompress(base64.b85decode("...")))`` stub."""
    m = re.search(r'b85decode\(\s*"([^"]*)"\s*\)', src)
    if not m:
        return src  # already plain source
    raw = base64.b85decode(m.group(1))
    return lzma.decompress(raw, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]).decode("utf-8")


def record_env(cfg, data):
    m, t = cfg.model, cfg.train
    env = size_env(cfg, data)
    # the record derives its paths from DATA_DIR (datasets/fineweb10B_sp{V}, tokenizers/fineweb_{V}_bpe.model),
    # which the synthetic dataset's root matches
    for k in ("DATA_PATH", "TOKENIZER_PATH"):
        env.pop(k)
    # the record's schedule is fractional (WARMDOWN_FRAC, its default kept) and its val batch is VAL_BATCH_TOKENS
    for k in ("WARMDOWN_ITERS", "VAL_BATCH_SIZE"):
        env.pop(k)
    env.update({
        "DATA_DIR": data["root"],
        "EMBEDDING_DIM": m.model_dim,  # no factorised embedding: EMBEDDING_DIM = MODEL_DIM as at full size (512)
        "ROPE_DIMS": m.rope_dims,
        "EVAL_SEQ_LEN": cfg.eval.eval_seq_len or t.train_seq_len,
        "VAL_BATCH_TOKENS": t.val_batch_size,
        "GPTQ_CALIBRATION_BATCHES": cfg.quant.gptq_calibration_batches,
    })
    return env


def to_record(sd, model):
    return dict(sd)  # same names and shapes (no banks)


def from_record(sd):
    return dict(sd)


def load_final_weights(run):
    return load_torch_state(run / "final_model.pt")  # saved after the EMA weights are loaded


METRICS = {
    "pre_quant": r"pre-quantization post-ema val_loss:([0-9.]+) val_bpb:([0-9.]+)",
    "roundtrip": r"(?m)^quantized val_loss:([0-9.]+) val_bpb:([0-9.]+)",
    "sliding": r"(?m)^quantized_sliding_window val_loss:([0-9.]+) val_bpb:([0-9.]+)",
}
ARTIFACT_BYTES = r"Serialized model quantized\+brotli: (\d+) bytes"
