"""``golf gpu-check``: the pre-flight of a GPU machine before a 600-second run (issue 14; DESIGN.md, device policy).

On one GPU it builds the preset at full shape with one rank's share of an 8-GPU step (``TRAIN_BATCH_TOKENS / 8``
tokens, ``GLOBAL_MICROBATCHES / 8`` micro-batches), on synthetic tokens (no data needed; packed presets get
documents of 100–1,500 tokens), and reports, each next to the record's published figure (SPEC §6):

* the device, torch / CUDA / FlashAttention versions, and an installed FlashAttention that fails to import;
* the attention backend actually used for dense and for varlen attention, and how compiled graphs call it
  (:func:`golflib.model.flash_op.choose_flash_op`);
* the bf16 dtype layout (tied embedding bf16, ``CastedLinear`` and control tensors fp32);
* compiled graphs and graph breaks (``torch._dynamo.utils.counters``; ``fullgraph`` makes a break an error);
* ms/step after warm-up in each loop phase, the projected steps in 600 s (less the GPTQ reserve) and peak memory;
* the projected seconds of the preset's scoring protocols on the full val set (each timed on a slice of the stream
  and scaled to ``val_tokens / 8`` per rank), against the 600-second eval limit.

It exits non-zero on a silent fallback (FlashAttention installed but unusable, or missing when the record used it;
SDPA for packed documents; a graph break; a wrong dtype layout) or a projection over a limit (eval > 600 s; a step
more than ``SLOW_FACTOR`` × the record's). Without CUDA it runs in dry mode: the same code path on the CPU at
``--scale`` for two steps, every CUDA-only check reported as ``dry`` — what it would check — and exit 0 unless the
harness itself fails.

One GPU stands for one of 8 ranks: Muon orthogonalises all matrices here (an 8-GPU rank does 1/8 and an
all-gather), and no gradient is all-reduced, so the projection is a bound for the compute, not a measurement of an
8-GPU run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from golflib.data.luts import ByteLUTs
from golflib.data.varlen import cu_seqlens_padded
from golflib.eval import compiled as compiled_eval
from golflib.eval.context import ScoringContext
from golflib.eval.protocols import PROTOCOLS, eval_window
from golflib.model import attention as att
from golflib.model.flash_op import choose_flash_op
from golflib.model.gpt import GPT, count_params
from golflib.model.layers import CONTROL_PATTERNS, CastedLinear
from golflib.model.recurrence import max_loops
from golflib.optim.build import build_optimizers
from golflib.presets import resolve
from golflib.quant.reserve import reserve_ms
from golflib.runtime import autocast, cast_model_for_device, set_precision, should_compile, synchronize

RANKS = 8
SLOW_FACTOR = 1.25  # a step slower than this × the record's is a silent slow path
EVAL_LIMIT_S = 600.0
# Val targets of the challenge's exports (SPEC §1.2), by vocabulary (CaseOps: its own count)
VAL_TOKENS = {1024: 62_021_632, 4096: 45_508_608, 8192: 40_540_160}
VAL_TOKENS_CASEOPS = 47_851_520
# The records' published figures on 8×H100 (SPEC §6): ms/step, steps, eval seconds of the scored protocols
RECORD_FIGURES: dict[str, dict[str, float]] = {
    "baseline": {"ms_per_step": 43.5, "steps": 13_780, "eval_s": 1.4},
    "pr287": {"ms_per_step": 84.0, "steps": 7_103, "eval_s": 70.0},
    "pr414": {"ms_per_step": 84.6, "steps": 7_096, "eval_s": 73.0},
    "pr549": {"ms_per_step": 83.4, "steps": 7_185, "eval_s": 530.0},
    "pr1019": {"ms_per_step": 86.7, "steps": 6_922, "eval_s": 77.0},
    "pr1394": {"ms_per_step": 118.0, "steps": 4_990, "eval_s": 84.0},
    "pr1855_arch": {"ms_per_step": 121.7, "steps": 4_931, "eval_s": 509.0},
    "pr1855": {"ms_per_step": 121.7, "steps": 4_931, "eval_s": 509.0},
}


@dataclass
class Check:
    """One line of the report: ``status`` is ``ok``, ``fail``, ``info`` or ``dry`` (would be checked on CUDA)."""

    name: str
    value: Any
    reference: Any = None
    status: str = "info"
    note: str = ""


def _synthetic_batch(cfg, tokens: int, device, gen: torch.Generator):
    """One rank's micro-batch of random tokens ``(x, y, model kwargs)``; packed presets get BOS-opened documents."""
    t = cfg.train.train_seq_len
    x = torch.randint(2, cfg.model.vocab_size, (tokens + 1,), generator=gen)
    if cfg.train.train_loader == "packed":
        pos = 0
        while pos < tokens:
            x[pos] = cfg.model.bos_id
            pos += int(torch.randint(100, 1500, (1,), generator=gen))
        from golflib.data.loaders import packed_doc_ids

        xx, yy = x[None, :-1].to(device), x[None, 1:].to(device)
        ids = packed_doc_ids(xx, cfg.model.bos_id, t)
        return xx, yy, dict(doc_ids=ids, cu_seqlens=cu_seqlens_padded(ids), max_seqlen=t)
    return x[:-1].view(-1, t).to(device), x[1:].view(-1, t).to(device), {}


def _layout_check(model: GPT, bf16: bool) -> Check:
    emb = model.tok_emb.weight.dtype
    linear = next(m.weight.dtype for m in model.modules() if isinstance(m, CastedLinear))
    control = {p.dtype for n, p in model.named_parameters() if p.ndim < 2 or any(c in n for c in CONTROL_PATTERNS)}
    want = (torch.bfloat16 if bf16 else torch.float32, torch.float32, {torch.float32})
    got = (emb, linear, control)
    return Check("bf16_layout", {"tok_emb": str(emb), "casted_linear": str(linear),
                                 "control": sorted(str(d) for d in control)},
                 "tok_emb bf16, CastedLinear fp32, control fp32 (SPEC §2.2)", "ok" if got == want else "fail")


def _time_steps(step_fn, steps: int, device) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn()
    synchronize(device)
    return 1000.0 * (time.perf_counter() - t0) / steps


def _eval_projection(cfg, model, device, slice_tokens: int, gen: torch.Generator) -> tuple[list[Check], float]:
    """Time each scoring protocol of ``cfg`` on a synthetic slice and scale to the full val set per rank."""
    v = cfg.model.vocab_size
    total = VAL_TOKENS_CASEOPS if cfg.data.caseops_enabled else VAL_TOKENS.get(v, VAL_TOKENS[8192])
    per_rank = total / RANKS
    luts = ByteLUTs(torch.full((v,), 3, dtype=torch.int16), torch.zeros(v, dtype=torch.bool),
                    torch.zeros(v, dtype=torch.bool))
    names = ["standard"] + (["sliding"] if cfg.eval.eval_stride > 0 else [])
    if cfg.ttt.ttt_enabled:
        names += [f"ttt/{k}" for k in cfg.ttt.ttt_kinds]
    if cfg.ngram.ngram_enabled:
        names += [f"ngram/{p}" for p in cfg.ngram.ngram_protocols]
    # one rank's eval batch (VAL_BATCH_SIZE is over all 8 ranks), and a slice holding at least one
    cfg = cfg.replace({"VAL_BATCH_SIZE": max(cfg.train.train_seq_len, min(cfg.train.val_batch_size // RANKS,
                                                                          slice_tokens))})
    checks, seconds = [], 0.0
    for name in names:
        proto = PROTOCOLS[name]
        L = proto.seq_len(cfg)
        n = max(L, cfg.train.val_batch_size, slice_tokens) // L * L
        toks = torch.randint(2, v, (n + 1,), generator=gen)
        toks[::max(64, L // 2)] = cfg.model.bos_id
        run_model = GPT(cfg.model).to(device) if name.startswith(("ttt/", "ngram/")) else model
        if run_model is not model:
            run_model.load_state_dict(model.state_dict())
            cast_model_for_device(run_model, device, CONTROL_PATTERNS)
        proto.run(run_model, toks, luts, cfg, ScoringContext(device=device))  # compile and warm-up: not timed
        synchronize(device)
        t0 = time.perf_counter()
        res = proto.run(run_model, toks, luts, cfg, ScoringContext(device=device))
        synchronize(device)
        dt = time.perf_counter() - t0
        projected = dt * per_rank / max(res.tokens, 1)
        seconds += projected
        checks.append(Check(f"eval:{name}", {"slice_tokens": res.tokens, "seconds": round(dt, 3),
                                            "projected_s": round(projected, 1)}, f"{per_rank:,.0f} targets per rank"))
    return checks, seconds


def gpu_check(preset: str = "baseline", steps: int = 20, warmup: int = 5, scale: float | None = None,
              slice_tokens: int = 65_536, overrides: dict | None = None, judge: bool | None = None) -> dict[str, Any]:
    """Run the pre-flight (module docstring) and return ``{"preset", "dry", "checks": [Check...], "ok"}``.
    ``scale`` (default: 1 on CUDA, 0.125 in dry mode) shrinks the preset as ``--scale`` does; ``overrides`` are
    config fields. ``judge`` (default: only on CUDA) gives every check its verdict on this device — on a CPU that
    fails the CUDA-only checks, as it should."""
    cuda = torch.cuda.is_available()
    dry = not (cuda if judge is None else judge)
    device = torch.device("cuda" if cuda else "cpu")
    scale = scale if scale is not None else (1.0 if cuda else 0.125)
    cfg = resolve(preset, overrides or {}, environ={}, scale=scale)
    tc = cfg.train
    checks: list[Check] = []
    ref = RECORD_FIGURES.get(preset, {})

    def gated(check: Check) -> Check:  # a CUDA-only verdict in dry mode is what it would check
        if dry and check.status in ("ok", "fail"):
            check.status, check.note = "dry", (check.note + " " if check.note else "") + "(checked on CUDA)"
        checks.append(check)
        return check

    checks.append(Check("device", torch.cuda.get_device_name(0) if cuda else "cpu (dry mode: no CUDA)"))
    checks.append(Check("versions", {"torch": torch.__version__, "cuda": torch.version.cuda or "none",
                                     "flash_attention": att.describe_backends()}, "torch 2.9.1+cu128"))
    gated(Check("flash_attention_import", dict(att.FLASH_IMPORT_ERRORS) or "ok", "no broken install",
                "fail" if att.FLASH_IMPORT_ERRORS else "ok"))
    set_precision("auto")
    backend = att.require_backend(tc.attention_backend, device)
    gated(Check("attention_dense", backend, "fa3 (the records' FlashAttention 3)",
                "ok" if backend in ("fa3", "fa2") or tc.attention_backend == "sdpa" else "fail",
                "" if backend != "sdpa" else "no FlashAttention: SDPA is slower than the records' kernel"))
    if tc.train_loader == "packed":
        varlen = backend if att.FLASH_VARLEN_FN is not None and backend != "sdpa" else "sdpa (dense block mask)"
        gated(Check("attention_varlen", varlen, "fa3 varlen (#1530/#1855)", "ok" if varlen in ("fa3", "fa2")
                    else "fail"))
    compiled = should_compile(tc.use_compile, device)
    compiled_eval.enable_compile(compiled)
    if compiled and backend != "sdpa":
        checks.append(Check("flash_attention_op", choose_flash_op(tc.flash_attn_op, device)))
    torch.manual_seed(0)
    model = GPT(cfg.model).to(device)
    cast_model_for_device(model, device, CONTROL_PATTERNS)
    gated(_layout_check(model, bf16=True))
    checks.append(Check("model_params", count_params(model), "published parameter count (golf presets)"))
    opts = build_optimizers(model, cfg.optim, cfg.model.tie_embeddings, compile_ns=compiled)
    from torch._dynamo.utils import counters

    counters.clear()
    fwd = torch.compile(model, dynamic=False, fullgraph=True) if compiled else model
    accum = max(1, tc.global_microbatches // RANKS)
    tokens = tc.train_batch_tokens // (RANKS * accum)
    gen = torch.Generator().manual_seed(0)
    batches = [_synthetic_batch(cfg, tokens, device, gen) for _ in range(accum)]

    def step() -> None:
        for x, y, kw in batches:
            with autocast(device):
                loss = fwd(x, y, **kw)
            (loss / accum).backward()
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)

    n_steps = steps if not dry else min(steps, 2)
    phase_ms = {}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for k in sorted({0, max_loops(cfg.model)}):
        model.set_active_loops(k)
        for _ in range(warmup if not dry else 1):
            step()
        phase_ms[k] = _time_steps(step, n_steps, device)
    graphs = int(counters["stats"].get("unique_graphs", 0))
    breaks = sum(counters["graph_break"].values())
    if compiled:
        gated(Check("compile", {"graphs": graphs, "graph_breaks": breaks}, "no graph break (fullgraph)",
                    "ok" if breaks == 0 else "fail"))
    else:
        gated(Check("compile", "off (USE_COMPILE)", "torch.compile on CUDA", "fail"))
    cap_s = tc.max_wallclock_seconds - reserve_ms(cfg) / 1000.0 if tc.max_wallclock_seconds > 0 else 600.0
    frac = tc.enable_looping_at[0] if (tc.enable_looping_at and max_loops(cfg.model)) else 1.0
    looped = phase_ms.get(max_loops(cfg.model), phase_ms[0])
    projected = cap_s * frac / (phase_ms[0] / 1000) + cap_s * (1 - frac) / (looped / 1000)
    ms = (frac * phase_ms[0] + (1 - frac) * looped)
    slow = "ms_per_step" in ref and ms > SLOW_FACTOR * ref["ms_per_step"]
    gated(Check("ms_per_step", {f"loops_{k}": round(v, 2) for k, v in phase_ms.items()},
                ref.get("ms_per_step"), "fail" if slow else "ok",
                f"one GPU at one rank's share ({tokens:,} tokens x {accum}); fail above {SLOW_FACTOR}x the record"))
    checks.append(Check("projected_steps", int(projected), ref.get("steps"), "info",
                        f"in {cap_s:.1f} s (MAX_WALLCLOCK_SECONDS less the GPTQ reserve)"))
    if cuda:
        checks.append(Check("peak_memory_gib", round(torch.cuda.max_memory_allocated() / 2**30, 2),
                            round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)))
    model.set_active_loops(max_loops(cfg.model))
    model.eval()
    eval_checks, eval_s = _eval_projection(cfg, model, device, slice_tokens if not dry else 1024, gen)
    checks += eval_checks
    gated(Check("eval_projected_s", round(eval_s, 1), ref.get("eval_s"), "fail" if eval_s > EVAL_LIMIT_S else "ok",
                f"limit {EVAL_LIMIT_S:.0f} s"))
    compiled_eval.enable_compile(False)
    ok = not any(c.status == "fail" for c in checks)
    return {"preset": preset, "scale": scale, "dry": dry, "ok": ok, "checks": [asdict(c) for c in checks]}


def format_report(rep: dict) -> str:
    """The report as an aligned text table (one line per check)."""
    lines = [f"golf gpu-check --preset {rep['preset']}" + (" [DRY: no CUDA]" if rep["dry"] else "")]
    for c in rep["checks"]:
        ref = f"  (record: {c['reference']})" if c["reference"] is not None else ""
        note = f"  — {c['note']}" if c["note"] else ""
        lines.append(f"{c['status'].upper():5} {c['name']:24} {c['value']}{ref}{note}")
    lines.append("RESULT: " + ("ok" if rep["ok"] else "FAIL") + (" (dry)" if rep["dry"] else ""))
    return "\n".join(lines)


def main(preset: str, steps: int, scale: float | None, out: str | None) -> int:
    """CLI entry: print the report, write JSON to ``out`` (or ``runs/gpu-check/<preset>-<time>.json``); exit 1 on
    a failed check."""
    import json
    from pathlib import Path

    rep = gpu_check(preset, steps=steps, scale=scale)
    print(format_report(rep))
    path = Path(out) if out else Path("runs") / "gpu-check" / f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rep, indent=1, default=str))
    print(f"written to {path}")
    return 0 if rep["ok"] else 1
