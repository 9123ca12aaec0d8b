"""Per-document batched LoRA TTT (SPEC §3.E1/E4: #77, #1530; warm A #1767) through the model's adapter seam.

Each document of the val stream (found by BOS, see :func:`golflib.eval.ttt_common.doc_segments`) is evaluated in
isolation with its own LoRA adapters on the Q, K, V, O and MLP outputs of every *virtual* layer plus the logit
head (sized from ``model.virtual_layers()`` and the shapes the seam reports, so depth recurrence is covered).
Documents are sorted by length into batches of ``batch_docs`` (longest batches first). Within a batch, for chunk
``c`` of ``chunk_size`` positions, every document still active runs one forward over a window of up to
``window`` tokens ending at the chunk's end (the window start ``max(0, (c+1)·chunk − window)`` does not depend on
the document's length, so the context of a position never depends on future tokens; ``last_window="doc_end"`` is
#1855's rule instead: a document's last chunk is scored in the window of up to ``window`` tokens ending at the
document's end — more context, but its start depends on where the document ends); the chunk's NLLs are scored
first, then one AdamW step on the per-document chunk-mean loss (never on a document's last chunk).

Adapters (``adapters``): ``shared`` — one adapter set, every slot's ``A`` the same seeded draw, reset per batch (A
kept with ``warm_start_a``); ``per_slot`` — #1855's ``BatchedTTTLoRA``: ``A`` drawn independently for every slot
from a generator seeded with ``seed`` at the start, module by module (head, q, v, k, mlp, o), ``B = 0``; a reusable
set of ``batch_docs`` slots is reset per batch (only ``B`` zeroed with ``warm_start_a``, else ``A`` redrawn), a
batch with fewer documents gets a fresh set of its own, and a fresh reusable set follows every phase of phased TTT.

Evaluation order: documents are not processed in stream order, so the ledger is given the declared order
(batch, chunk, document, position) — :func:`lora_order` — and its report says it is not stream order.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from golflib.data.bytecount import ByteCounter
from golflib.eval.bpb import BPBAccumulator, EvalResult
from golflib.eval.context import ScoringContext
from golflib.eval.protocols import eval_window
from golflib.eval.ledger import Ledger, checked_report, record_other_ranks
from golflib.eval.ttt_common import (check_rows, consumed_positions, doc_segments, masked_nll, running_bpb,
                                     set_all_requires_grad, write_scores)
from golflib.runtime import autocast, synchronize
from golflib.settings.scoring import LORA_ADAPTER_KINDS, LORA_LAST_WINDOWS, LORA_SITES
from golflib.eval.compiled import forward_of
from golflib.progress import Progress

SITES = LORA_SITES  # q, k, v, o, mlp, head (TTT_LORA_SITES picks a subset)
DRAW_ORDER = ("head", "q", "v", "k", "mlp", "o")  # #1855 BatchedTTTLoRA's module order (its A draws follow it)


def adapter_shapes(model, device: torch.device | str = "cpu") -> dict[tuple[str, int], tuple[int, int]]:
    """``{(site, virtual_layer): (in_features, out_features)}`` of every projection the model routes through its
    adapter seam, found by one forward on 4 random tokens (never val data). Raises ``RuntimeError`` if the layers
    seen do not match ``model.virtual_layers()``."""
    seen: dict[tuple[str, int], tuple[int, int]] = {}

    def record(site, layer, x, out):
        seen[(site, layer)] = (x.size(-1), out.size(-1))
        return out

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.cfg.vocab_size, (1, 4), generator=g).to(device)
    with torch.no_grad():
        model.logits(ids, record)
    layers = sorted({layer for (_, layer) in seen if layer >= 0})
    if layers != list(range(len(model.virtual_layers()))):
        raise RuntimeError(f"adapter seam reported layers {layers}, expected virtual layers "
                           f"0..{len(model.virtual_layers()) - 1}")
    return seen


class BatchedLoRA(nn.Module):
    """LoRA adapters for ``n_slots`` documents at once: for each (site, virtual layer) ``A [n_slots, r, in]`` and
    ``B [n_slots, out, r]``; the adapter adds ``(alpha / r) · (x Aᵀ) Bᵀ`` to the projection output (``alpha = 0``
    means scale 1). ``B`` starts at zero, so a fresh adapter is the identity. ``A ~ U(±1/sqrt(in))``:

    * ``init="shared"``: one draw per (site, layer) from ``Generator(seed)``, the same for every slot, which keeps a
      document's result independent of its batch-mates; :meth:`reset` restores it;
    * ``init="per_slot"`` (#1530/#1855): ``torch.empty(n_slots, r, in).uniform_`` from ``generator`` per (site,
      layer) in #1855's order (head, then q, v, k, mlp, o, each over the layers), so every slot has its own draw;
      :meth:`reset` redraws the same way (one generator per run reproduces the record's stream of draws).

    Call :meth:`select` with the active slot indices before a forward; the module itself is the adapter
    ``adapter(site, layer, x, out)`` of :class:`golflib.model.gpt.GPT`. Raises ``ValueError`` for an unknown
    ``init`` or ``per_slot`` without a generator.
    """

    def __init__(self, shapes: dict[tuple[str, int], tuple[int, int]], n_slots: int, rank: int,
                 alpha: float = 0.0, sites: tuple[str, ...] = SITES, seed: int = 0, init: str = "shared",
                 generator: torch.Generator | None = None):
        super().__init__()
        if init not in LORA_ADAPTER_KINDS:
            raise ValueError(f"TTT_LORA_ADAPTERS={init!r}: expected one of {', '.join(LORA_ADAPTER_KINDS)}")
        if init == "per_slot" and generator is None:
            raise ValueError("BatchedLoRA(init='per_slot') needs a torch.Generator")
        self.rank, self.scale = rank, (alpha / rank if alpha > 0 else 1.0)
        self.init, self.generator, self.n_slots = init, generator, n_slots
        keys = [k for k in shapes if k[0] in sites]
        if init == "per_slot":
            keys.sort(key=lambda k: (DRAW_ORDER.index(k[0]), k[1]))
        self.keys = {k: f"{k[0]}_{k[1] if k[1] >= 0 else 'h'}" for k in keys}
        g = torch.Generator().manual_seed(seed)
        self.A, self.B = nn.ParameterDict(), nn.ParameterDict()
        for key, name in self.keys.items():
            fan_in, fan_out = shapes[key]
            if init == "per_slot":
                a = torch.empty(n_slots, rank, fan_in).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in),
                                                                generator=generator)
            else:
                a0 = (torch.rand(rank, fan_in, generator=g) * 2 - 1) / math.sqrt(fan_in)
                self.register_buffer(f"A0_{name}", a0)
                a = a0.expand(n_slots, -1, -1).clone()
            self.A[name] = nn.Parameter(a)
            self.B[name] = nn.Parameter(torch.zeros(n_slots, fan_out, rank))
        self.active: torch.Tensor | None = None

    def select(self, slots: torch.Tensor) -> None:
        self.active = slots

    @torch.no_grad()
    def reset(self, warm_start_a: bool = False) -> None:
        """Zero every B (adapters become the identity); unless ``warm_start_a``, restore A (``shared``) or draw it
        again (``per_slot``)."""
        for name in self.keys.values():
            self.B[name].zero_()
            if warm_start_a:
                continue
            a = self.A[name]
            if self.init == "per_slot":
                bound = 1 / math.sqrt(a.size(-1))
                a.copy_(torch.empty(a.shape).uniform_(-bound, bound, generator=self.generator))
            else:
                a.copy_(getattr(self, f"A0_{name}").expand_as(a))

    def forward(self, site: str, layer: int, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        name = self.keys.get((site, layer))
        if name is None:
            return out
        a, b = self.A[name][self.active], self.B[name][self.active]
        return out + self.scale * torch.bmm(torch.bmm(x, a.transpose(1, 2).to(x.dtype)), b.transpose(1, 2).to(x.dtype))


def lora_schedule(segments: np.ndarray, batch_docs: int) -> list[np.ndarray]:
    """Batches of document indices: sorted by length (ascending, stable), cut into ``batch_docs``, batches queued
    longest first (as #1530/#1626)."""
    lengths = segments[:, 1] - segments[:, 0]
    srt = np.argsort(lengths, kind="stable")
    batches = [srt[i:i + batch_docs] for i in range(0, len(srt), batch_docs)]
    batches.sort(key=lambda b: -int(lengths[b].max()))
    return batches


def lora_order(segments: np.ndarray, batches: list[np.ndarray], chunk_size: int, n_targets: int) -> np.ndarray:
    """Declared evaluation order: rank of every target = (batch in queue, chunk, slot in batch, offset in chunk),
    lexicographic. Returns int64 ``[n_targets]`` (ranks are unique, not necessarily contiguous)."""
    lengths = segments[:, 1] - segments[:, 0]
    max_chunks = int(-(-lengths.max() // chunk_size))
    width = max(len(b) for b in batches)
    order = np.empty(n_targets, dtype=np.int64)
    for k, batch in enumerate(batches):
        for slot, d in enumerate(batch):
            s, e = segments[d]
            off = np.arange(e - s, dtype=np.int64)
            order[s:e] = ((k * max_chunks + off // chunk_size) * width + slot) * chunk_size + off % chunk_size
    return order


@dataclass(frozen=True)
class LoRATTTSettings:
    """Hyperparameters of per-document LoRA TTT (env names of :class:`golflib.settings.scoring.TTTConfig`).

    ``window`` (tokens, ``TTT_EVAL_SEQ_LEN``), ``chunk_size`` (positions scored then learned per step,
    ``TTT_CHUNK_SIZE``), ``batch_docs`` (documents per batch, ``TTT_BATCH_SIZE``), ``lora_rank``, ``lr``
    (``TTT_LORA_LR``), ``lora_alpha`` (0: scale 1, else alpha / rank), ``beta1`` / ``beta2`` / ``weight_decay``
    (AdamW), ``warm_start_a`` (keep ``A`` across batches, #1767), ``bos_id`` (the token opening a document),
    ``sites`` (subset of q, k, v, o, mlp, head), ``adapters`` (shared | per_slot) and ``last_window`` (chunk |
    doc_end) as in the module docstring, ``seed`` (seeds the adapters' ``A`` draws; ``per_slot``: #1855's
    fixture seeds the global RNG with SEED at the TTT start). Raises ``ValueError`` for a window shorter than a
    chunk or an unknown ``adapters`` / ``last_window``."""

    window: int
    chunk_size: int
    batch_docs: int
    lora_rank: int
    lr: float
    lora_alpha: float = 0.0
    beta1: float = 0.0
    beta2: float = 0.999
    weight_decay: float = 0.5
    warm_start_a: bool = False
    bos_id: int = 1
    sites: tuple[str, ...] = SITES
    adapters: str = "shared"
    last_window: str = "chunk"
    seed: int = 0

    def __post_init__(self):
        if self.window < self.chunk_size:
            raise ValueError(f"TTT_EVAL_SEQ_LEN={self.window} must be >= TTT_CHUNK_SIZE={self.chunk_size} (a chunk "
                             "is scored inside one window)")
        if self.adapters not in LORA_ADAPTER_KINDS:
            raise ValueError(f"TTT_LORA_ADAPTERS={self.adapters!r}: expected one of {', '.join(LORA_ADAPTER_KINDS)}")
        if self.last_window not in LORA_LAST_WINDOWS:
            raise ValueError(f"TTT_LORA_LAST_WINDOW={self.last_window!r}: expected one of "
                             f"{', '.join(LORA_LAST_WINDOWS)}")

    @classmethod
    def from_config(cls, cfg, bos_id: int | None = None) -> LoRATTTSettings:
        """The settings a :class:`golflib.config.Config` asks for: windows of ``TTT_EVAL_SEQ_LEN`` (else
        ``EVAL_SEQ_LEN``, else ``TRAIN_SEQ_LEN``); ``bos_id`` defaults to ``BOS_ID``; with
        ``TTT_LORA_ADAPTERS=per_slot`` the adapters' draws are seeded with ``SEED``."""
        t = cfg.ttt
        L = eval_window(cfg)
        return cls(window=t.ttt_eval_seq_len or L, chunk_size=t.ttt_chunk_size, batch_docs=t.ttt_batch_size,
                   lora_rank=t.ttt_lora_rank, lr=t.ttt_lora_lr, lora_alpha=t.ttt_lora_alpha, beta1=t.ttt_beta1,
                   beta2=t.ttt_beta2, weight_decay=t.ttt_weight_decay, warm_start_a=t.ttt_warm_start_a,
                   bos_id=cfg.model.bos_id if bos_id is None else bos_id, sites=tuple(t.ttt_lora_sites),
                   adapters=t.ttt_lora_adapters, last_window=t.ttt_lora_last_window,
                   seed=cfg.train.seed if t.ttt_lora_adapters == "per_slot" else 0)


def eval_ttt_lora(model, val_tokens: torch.Tensor, luts: ByteCounter, settings: LoRATTTSettings,
                  ctx: ScoringContext | None = None, *, after_round: Callable | None = None,
                  mode: str = "ttt_lora") -> EvalResult:
    """Doc-isolated LoRA TTT (module docstring) over ``val_tokens`` (int64 ``[n_targets + 1]``, documents opened
    by ``settings.bos_id``) with ``settings``, in ``ctx`` (:class:`golflib.eval.context.ScoringContext`; None:
    single process on the CPU, a fresh strict ledger).

    Under torchrun batch ``k`` of the queue runs on rank ``k % world_size``, in rounds of ``world_size`` batches
    (#1855 hands batches out dynamically through a file counter; a fixed assignment keeps runs reproducible).
    ``after_round(round_index, docs_done, ledger, sync)`` (phased TTT) runs after every round on all ranks and
    returns True when it changed the base model; ``sync()`` records the other ranks' scored positions in this
    rank's ledger. The base model is frozen (``requires_grad`` off) during the loop and restored afterwards.
    ``ctx.ledger``, if given, must declare :func:`lora_order`; a fresh strict one is made otherwise.
    ``ctx.scores_out`` receives this rank's scores (:func:`golflib.eval.ttt_common.write_scores`). Returns an
    :class:`EvalResult` (mode ``mode``) whose ``details`` are the settings plus counts and the per-round curve.
    ``ctx.mixer`` (optional, :class:`golflib.eval.ngram.NgramMixer`) mixes each scored chunk's adapted logits and
    records their scoring in the ledger; its NLLs are the score (the adapters still train on the model's loss).
    """
    ctx = ctx or ScoringContext()
    st = settings
    chunk_size, batch_docs, lora_rank, bos_id = st.chunk_size, st.batch_docs, st.lora_rank, st.bos_id
    lora_alpha, sites, seed, adapters, warm_start_a = st.lora_alpha, st.sites, st.seed, st.adapters, st.warm_start_a
    rank, world_size, ledger = ctx.rank, ctx.world_size, ctx.ledger
    device = ctx.torch_device
    t0 = time.perf_counter()
    n = val_tokens.numel() - 1
    segments = doc_segments(val_tokens, bos_id)
    batches = lora_schedule(segments, batch_docs)
    if ledger is None:
        ledger = Ledger(n, order=lora_order(segments, batches, chunk_size, n))
    set_all_requires_grad(model, False)
    model.eval()
    shapes = adapter_shapes(model, device)
    gen = torch.Generator().manual_seed(seed) if adapters == "per_slot" else None

    def make(n_slots: int) -> BatchedLoRA:
        return BatchedLoRA(shapes, n_slots, lora_rank, lora_alpha, sites, seed, init=adapters,
                           generator=gen).to(device)

    reusable = make(batch_docs)
    luts = luts.to(device)
    acc = BPBAccumulator(device)
    unsynced: list[np.ndarray] = []
    curve: list[dict] = []
    steps = docs_done = fresh = 0

    def sync() -> None:
        if world_size > 1:
            record_other_ranks(ledger, np.concatenate(unsynced) if unsynced else np.zeros(0, np.int64), device)
        unsynced.clear()

    n_rounds = -(-len(batches) // world_size)
    prog = Progress(n_rounds, "ttt/doc-lora" if after_round is None else "ttt/phased", "rounds", enabled=rank == 0)
    for r in prog.wrap(range(n_rounds)):
        k = r * world_size + rank
        if k < len(batches):
            segs = segments[batches[k]]
            if adapters == "per_slot" and len(segs) != batch_docs:  # #1855: a short batch gets its own fresh set
                lora = make(len(segs))
                fresh += 1
            else:
                lora = reusable
                lora.reset(warm_start_a)
            steps += _run_batch(model, lora, val_tokens, segs, luts, acc, ledger, unsynced, st, ctx)
        docs_done += sum(len(b) for b in batches[r * world_size:(r + 1) * world_size])
        changed = after_round(r, docs_done, ledger, sync) if after_round is not None else False
        if changed and adapters == "per_slot":  # #1855: fresh adapters after every global phase
            reusable = make(batch_docs)
            fresh += 1
        curve.append({"round": r, "docs_done": docs_done, "running_val_bpb": running_bpb(acc.sums)})
    sync()
    set_all_requires_grad(model, True)
    acc.all_reduce()
    report = checked_report(ledger)
    synchronize(device)
    res = acc.result(mode, time.perf_counter() - t0, report)
    res.details = {**dataclasses.asdict(st), "sites": list(sites), "fresh_adapter_sets": fresh,
                   "n_docs": int(len(segments)), "n_batches": len(batches), "lora_steps": steps,
                   "world_size": world_size,
                   "order": "length-sorted document batches (longest first), chunk-major within a batch",
                   "curve": curve}
    return res


def _run_batch(model, lora: BatchedLoRA, val_tokens, segs: np.ndarray, luts, acc, ledger: Ledger, unsynced,
               st: LoRATTTSettings, ctx: ScoringContext) -> int:
    """One batch of documents on an already reset ``lora``: score chunk c of every active document, then step.
    Rows are ``min((c+1)·chunk, window)`` tokens wide (zero-padded, as #1855). Returns the number of optimizer
    steps."""
    window, chunk_size, last_window, device = st.window, st.chunk_size, st.last_window, ctx.torch_device
    scores_out, mixer = ctx.scores_out, ctx.mixer
    params = list(lora.parameters())
    opt = torch.optim.AdamW(params, lr=st.lr, betas=(st.beta1, st.beta2), eps=1e-10, weight_decay=st.weight_decay)
    lengths = segs[:, 1] - segs[:, 0]
    n_chunks = -(-lengths // chunk_size)
    steps = 0
    for c in range(int(n_chunks.max())):
        active = np.flatnonzero(n_chunks > c)
        train = n_chunks[active] > c + 1  # never train on a document's last chunk
        c0 = c * chunk_size
        ends = np.minimum(c0 + chunk_size, lengths[active])
        ws = max(0, c0 + chunk_size - window)  # independent of the document's length
        starts = np.full(len(active), ws, dtype=np.int64)
        if last_window == "doc_end":  # #1855: a last chunk is scored in the window ending at the document's end
            last = ~train
            starts[last] = np.maximum(0, ends[last] - window)
        width = min(c0 + chunk_size, window)
        x = torch.zeros(len(active), width, dtype=torch.int64)
        y = torch.full((len(active), width), -1, dtype=torch.int64)
        scored = torch.zeros(len(active), width, dtype=torch.bool)
        for i, (d, w0, e) in enumerate(zip(active, starts, ends)):
            s = int(segs[d, 0])
            toks = val_tokens[s + int(w0):s + int(e) + 1]
            x[i, :len(toks) - 1], y[i, :len(toks) - 1] = toks[:-1], toks[1:]
            scored[i, c0 - int(w0):int(e) - int(w0)] = True
        x, y, scored = x.to(device), y.to(device), scored.to(device)
        lora.select(torch.as_tensor(active, device=device))
        with torch.set_grad_enabled(bool(train.any())), autocast(device):
            logits = forward_of(model, "logits")(x, lora)
        nll = masked_nll(logits, y)
        positions = np.concatenate([np.arange(segs[d, 0] + c0, segs[d, 0] + e) for d, e in zip(active, ends)])
        if mixer is None:  # a mixer records the scoring itself, block by block
            ledger.score(positions)
        unsynced.append(positions)
        with torch.no_grad():
            sel = nll.detach()[scored]
            dumps_rows = ctx.dump is not None and ctx.dump.wants_rows(positions)
            want = mixer is not None or (scores_out is not None and scores_out.dim() == 2) or dumps_rows
            rows = logits.detach()[scored] if want else None
            if mixer is not None:  # mixed log-prob rows pass through write_scores' log_softmax unchanged
                sel, rows = mixer(positions, rows, y[scored], ledger,
                                  rows=(scores_out is not None and scores_out.dim() == 2) or dumps_rows)
            acc.add(sel, x[scored], y[scored], luts, positions)
            if scores_out is not None:
                write_scores(scores_out, positions, sel, rows if scores_out.dim() == 2 else None)
            if ctx.dump is not None:  # golflib.eval.dump.ScoreDump (the audit's replay)
                ctx.dump.write(positions, sel, rows, log_probs=mixer is not None, ledger=ledger)
            if c == 0 and mixer is None:
                check_rows(ledger, logits.detach()[scored], positions, sel, y[scored])
        if train.any():
            per_doc = (nll * scored).sum(1) / scored.sum(1).clamp_min(1)
            (per_doc * torch.as_tensor(train, device=device, dtype=per_doc.dtype)).sum().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            steps += 1
            used = [consumed_positions(segs[d, 0] + ws, segs[d, 0] + e, lo=segs[d, 0])
                    for d, e, t in zip(active, ends, train) if t]
            ledger.update(np.concatenate(used), persistent=st.warm_start_a)
    ledger.reset()  # the batch's adapters are discarded (A kept only with warm_start_a: a persistent update)
    return steps
