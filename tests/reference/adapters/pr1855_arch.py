"""#1855, the top stack (records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611),
run WITHOUT CaseOps: plain SentencePiece LUT byte counting on the synthetic sp1024 data (golflib's pr1855_arch).

The record's recipe is the one its published runs used: the "Hyperparameters:" block of its seed logs (= the
README's reproduce command). Several of those values are NOT the script's env-var defaults (SMEAR_GATE_ENABLED,
SPARSE_ATTN_GATE_*, EMBED_BITS, clip sigmas, MIN_LR, WARMDOWN_FRAC, BETA2, TTT_*, PHASED_TTT_NUM_PHASES,
COMPRESSOR...), so they are passed explicitly in ``RECORD_RUN`` below, value for value from train_seed42.log.
Everything else is left at the script's own default.

CPU-only changes (no recipe effect): Triton is stubbed (its kernels are never launched), the fused LeakyReLU² MLP
and the fused soft-capped CE run their eager paths (same math: the fused CE computes 2c·σ(2x/c), the eager path
c·tanh(x/c) = that − c, a constant that cancels in the softmax), the CUDA side stream of the optimizer step is a
no-op, pinned host buffers are plain ones, fp32 matmul precision stays "highest".

Hard-coded sizes changed (SOURCE_PATCHES, scaled with the model):
* ``t.numel() <= 65536`` — the fp16-passthrough threshold of ``gptq_mixed_quantize``. At full size it separates
  every matrix (smallest: c_k 256×512 = 131,072) from every control tensor (largest: skip_weights 8×512 = 4,096);
  at width 64 every tensor is ≤ 65,536 (tok_emb is exactly 65,536), so nothing would reach GPTQ/LQER/lrzip. 1024
  keeps the full-size split (matrices ≥ 2,048 elements at width 64, control tensors ≤ 512).
Hook the harness lacks, patched here: with CaseOps off, ``eval_val`` still reads the byte sidecar
(``val_data.val_bytes`` is None → TypeError); the patch counts bytes with the record's own SentencePiece LUTs
(SPEC §1.4, the same expression its TTT path ``_accumulate_bpb`` uses when there is no sidecar).

Codec: the record's own per-group serializer (COMPRESSOR=pergroup: lrzip -z -L 9 per tensor group + brotli) runs
for real; it shells out to the ``lrzip`` binary (Debian package ``lrzip``; ``apt-get install lrzip``), which
regenerating this fixture therefore needs.

Parameter correspondence (golflib → record): blocks.i.attn.c_q ↔ qo_bank[i], attn.proj ↔ qo_bank[L+i],
attn.c_k ↔ kv_bank[i], attn.c_v ↔ kv_bank[L+i], mlp.fc ↔ mlp_up_bank[i], mlp.proj ↔ mlp_down_bank[i],
attn.gate.attn_gate_w ↔ attn.attn_gate_w, smear.gate_w ↔ smear_gate.weight, smear.lam (shape ()) ↔
smear_lambda (shape (1,): same single value, reshaped — a shape difference, reported), everything else same name.
"""

from __future__ import annotations

import re

import torch

from reference.adapters.common import ACCUM, RUN, SCALE, load_torch_state, size_env  # noqa: F401

RECORD = "records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"

# Fixture sizes of the record's TTT (rank 80 and alpha 144 are the record's own values, kept; batch, prefix and
# global-SGD chunking shrink to the 12,288-token synthetic val stream of 68 documents: LoRA batches of 16/16/16/16/4
# docs, the short one first (a fresh LoRA), 3 phases at 10/21/32 documents, 1,024-token global-SGD chunks of 8
# sequences of 128).
TTT_SIZES = {"TTT_LORA_RANK": 80, "TTT_BATCH_SIZE": 16, "PHASED_TTT_PREFIX_DOCS": 32,
             "GLOBAL_TTT_CHUNK_TOKENS": 1024, "GLOBAL_TTT_BATCH_SEQS": 8, "TTT_CHUNK_SIZE": 48}
GPTQ_BATCHES = 4

GOLF_OVERRIDES = {
    **RUN,
    # golflib's --scale changes these for CPU; the record keeps its own values in the fixture run
    "EMA_DECAY": 0.9965, "MUON_MOMENTUM_WARMUP_STEPS": 1500, "TTT_LORA_ALPHA": 144.0,
    # the same sizes as the record run below
    **TTT_SIZES, "TTT_EVAL_SEQ_LEN": 128, "GPTQ_CALIBRATION_BATCHES": GPTQ_BATCHES,
}

# The record's published recipe where it differs from the script's env defaults (train_seed42.log, README).
RECORD_RUN = {
    "SMEAR_GATE_ENABLED": 1, "SPARSE_ATTN_GATE_ENABLED": 1, "SPARSE_ATTN_GATE_SCALE": 0.5, "GATED_ATTN_QUANT_GATE": 1,
    "EMBED_BITS": 7, "EMBED_CLIP_SIGMAS": 14.0, "MLP_CLIP_SIGMAS": 11.5, "ATTN_CLIP_SIGMAS": 13.0,
    "MIN_LR": 0.1, "WARMDOWN_FRAC": 0.85, "BETA2": 0.99, "TTT_BETA2": 0.99, "TTT_WEIGHT_DECAY": 0.5,
    "PHASED_TTT_NUM_PHASES": 3, "COMPRESSOR": "pergroup", "GPTQ_RESERVE_SECONDS": 0.5,
    "CASEOPS_ENABLED": 0,  # golflib's preset is the stack without CaseOps (plain sp LUT bytes)
}


def record_env(cfg, data):
    m, t = cfg.model, cfg.train
    env = size_env(cfg, data)
    env.pop("VAL_BATCH_SIZE")  # the record's name is VAL_BATCH_TOKENS
    env.pop("WARMDOWN_ITERS")  # the record has only the fractional warmdown (WARMDOWN_FRAC, in RECORD_RUN)
    env.update({
        **RECORD_RUN,
        "FUSED_CE_ENABLED": 0,  # the Triton CE kernel needs CUDA; the eager path is the same loss (module doc)
        "RUN_ID": "fixture_pr1855_arch",  # names its /tmp TTT counter files
        "DATA_DIR": data["root"], "VAL_BATCH_TOKENS": t.val_batch_size, "EVAL_SEQ_LEN": cfg.eval.eval_seq_len or
        t.train_seq_len, "ROPE_DIMS": m.rope_dims, "GATE_WINDOW": m.gate_window, "MLP_MULT": m.mlp_mult,
        "GPTQ_CALIBRATION_BATCHES": cfg.quant.gptq_calibration_batches,
        "TTT_EVAL_SEQ_LEN": cfg.ttt.ttt_eval_seq_len or cfg.eval.eval_seq_len or t.train_seq_len,
        "TTT_LORA_RANK": cfg.ttt.ttt_lora_rank, "TTT_BATCH_SIZE": cfg.ttt.ttt_batch_size,
        "TTT_CHUNK_SIZE": cfg.ttt.ttt_chunk_size, "PHASED_TTT_PREFIX_DOCS": cfg.ttt.phased_ttt_prefix_docs,
        "GLOBAL_TTT_CHUNK_TOKENS": cfg.ttt.global_ttt_chunk_tokens,
        "GLOBAL_TTT_BATCH_SEQS": cfg.ttt.global_ttt_batch_seqs,
    })
    return env


_LUT_BYTES = (
    "            if val_data.val_bytes is None:  # reference harness: CaseOps off -> SentencePiece LUT bytes\n"
    "                val_byte_count += (val_data.base_bytes_lut[tgt_ids].to(torch.float64) + (\n"
    "                    val_data.has_leading_space_lut[tgt_ids] & ~val_data.is_boundary_token_lut[prev_ids]\n"
    "                ).to(torch.float64)).sum()\n"
    "                continue\n"
    r"\g<0>"
)

SOURCE_PATCHES = [
    # Triton is CUDA-only: stub the module names the kernel definitions need at import time (never launched)
    (r"^import triton\nimport triton\.language as tl\nfrom triton\.tools\.tensor_descriptor import TensorDescriptor\n",
     "import types as _harness_types\ntriton = _harness_types.SimpleNamespace(jit=lambda f: f)\n"
     "tl = _harness_types.SimpleNamespace(constexpr=None)\nTensorDescriptor = None\n"),
    # fused LeakyReLU^2 MLP kernel -> its eager path (the one eval and calibration use)
    (r"if self\.training and self\.use_fused:", "if False:  # reference harness: eager MLP on CPU"),
    # the optimizer step's CUDA side stream
    (r"self\._aux_stream = torch\.cuda\.Stream\(\)", "self._aux_stream = None"),
    (r"self\._aux_stream\.wait_stream\(torch\.cuda\.current_stream\(\)\)", "pass"),
    (r"with torch\.cuda\.stream\(self\._aux_stream\):", "if True:"),
    (r"torch\.cuda\.current_stream\(\)\.wait_stream\(self\._aux_stream\)", "pass"),
    (r"pin_memory=True", "pin_memory=False"),
    (r"cu_seqlens = cu_seqlens\.pin_memory\(\)", "pass"),
    (r'torch\.set_float32_matmul_precision\("high"\)', 'torch.set_float32_matmul_precision("highest")'),
    # hard-coded size: fp16 passthrough threshold, scaled to the fixture width (module docstring)
    (r"t\.numel\(\) <= 65536:", "t.numel() <= 1024:  # reference harness: 65536 at full width"),
    # CaseOps off: LUT byte count in eval_val (module docstring)
    (r"^            sidecar_slice = val_data\.val_bytes\[raw_start \+ 1 : raw_end\]", _LUT_BYTES),
]
SOURCE_PATCHES = [(re.compile(p, re.M), r) for p, r in SOURCE_PATCHES]

def after_exec(mod):
    """Reseed torch's global RNG with SEED when the phased TTT eval starts. The record draws every LoRA ``A``
    (``BatchedLinearLoRA``: ``torch.empty(bsz, rank, in).uniform_(±1/sqrt(in))``, one draw per module in the order
    lm_head, q×slots, v×slots, k×slots, mlp×slots, o×slots, and again for each fresh LoRA: after every global-SGD
    phase and for a batch smaller than TTT_BATCH_SIZE) from the global RNG, whose state there depends on everything
    drawn before (three GPT inits, the compile warm-up's random tokens). Seeding at the eval's start makes those
    draws a function of SEED alone, so a reimplementation can reproduce them; it changes no recipe value (the
    unseeded draws move the fixture's TTT score by ~5e-5 relative). A cleaner hook: the harness seeding the RNG
    before each scoring protocol it captures."""
    import functools

    inner = mod.eval_val_ttt_phased

    @functools.wraps(inner)
    def seeded(h, *args, **kwargs):
        torch.manual_seed(h.seed)
        return inner(h, *args, **kwargs)

    mod.eval_val_ttt_phased = seeded


_BANKS = {  # golflib name pattern -> (record bank, index offset in units of num_layers)
    "attn.c_q.weight": ("qo_bank", 0), "attn.proj.weight": ("qo_bank", 1),
    "attn.c_k.weight": ("kv_bank", 0), "attn.c_v.weight": ("kv_bank", 1),
    "mlp.fc.weight": ("mlp_up_bank", 0), "mlp.proj.weight": ("mlp_down_bank", 0),
}
_RENAME = {"smear.gate_w": "smear_gate.weight", "smear.lam": "smear_lambda"}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _rec_name(golf: str) -> str:
    if golf in _RENAME:
        return _RENAME[golf]
    return golf.replace(".attn.gate.attn_gate_w", ".attn.attn_gate_w")


def to_record(sd, model):
    n = model.num_layers
    own = model.state_dict()
    out = {}
    banks = {k: own[k].detach().clone().float() for k in ("qo_bank", "kv_bank", "mlp_up_bank", "mlp_down_bank")}
    for name, t in sd.items():
        m = _BLOCK.match(name)
        if m and m.group(2) in _BANKS:
            bank, off = _BANKS[m.group(2)]
            banks[bank][off * n + int(m.group(1))] = t
            continue
        rn = _rec_name(name)
        out[rn] = t.reshape(own[rn].shape)  # smear_lambda: golflib () -> record (1,)
    out.update(banks)
    return out


def from_record(sd):
    sd = {k: v for k, v in sd.items()}
    n = sd["mlp_up_bank"].shape[0]
    out = {}
    for name, t in sd.items():
        if name in ("qo_bank", "kv_bank", "mlp_up_bank", "mlp_down_bank"):
            for sub, (bank, off) in _BANKS.items():
                if bank == name:
                    for i in range(n):
                        out[f"blocks.{i}.{sub}"] = t[off * n + i]
            continue
        inv = {v: k for k, v in _RENAME.items()}
        if name in inv:
            out[inv[name]] = t.reshape(()) if name == "smear_lambda" else t
            continue
        out[name.replace(".attn.attn_gate_w", ".attn.gate.attn_gate_w")] = t
    return out


def load_final_weights(run):
    return load_torch_state(run / "final_model.pt")  # EMA weights, banked (serialize() saves them before GPTQ)


METRICS = {
    "pre_quant": r"diagnostic pre-quantization post-ema val_loss:([0-9.]+) val_bpb:([0-9.]+)",
    "roundtrip": r"diagnostic quantized val_loss:([0-9.]+) val_bpb:([0-9.]+)",
    "ttt_phased": r"quantized_ttt_phased val_loss:([0-9.]+) val_bpb:([0-9.]+)",
}
# model bytes only (golflib's artifact_bytes excludes code); lrzip per group + brotli remainder, the real codec
ARTIFACT_BYTES = r"Serialized model quantized\+pergroup: (\d+) bytes"
