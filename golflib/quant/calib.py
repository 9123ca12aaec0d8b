"""Calibration for GPTQ: input Hessians ``H = Σ XᵀX / n_batches`` from forward hooks (SPEC §3.B5, §3.B6, §3.B8).

:class:`HessianCollector` hooks every ``nn.Linear`` (``CastedLinear``) of a model and accumulates, per weight name
(``"blocks.0.attn.c_q.weight"``), the sum of ``xᵀx`` over *every* call: a module reused by depth recurrence gets the
inputs of all its virtual layers. The logit projection of a tied model is not a module call, so
:func:`collect_hessians` runs ``model.hidden(x)`` and adds the final-norm output's Hessian under the head's weight
name (``tok_emb.weight`` when tied, ``lm_head.weight`` otherwise) — GPTQ on the embedding (#1394).

Calibration data: :func:`train_batches` (training tokens; must finish inside the training budget, SPEC trap 8,
so the caller times it; optionally without document ids, #1855's dense calibration) or :func:`ar_batches`,
sequences the model samples itself (#1019: temperature 0.8, fixed seed, first token uniform) so quantization
touches neither train nor val data; :func:`ar_calibration_inputs` feeds them one sequence at a time without its last
token, as #1019's Hessian model reads ``seq[:, :-1]``.

Normalization: like every record, ``H`` is the sum over calibration batches (for AR: sequences) divided by their
number (#1394 → #1855 ``/ n_calibration_batches``, #1019 ``/ num_seqs``), so that equal activations give the records'
Hessians bit for bit. (Until issue 11 golflib divided by the number of rows; GPTQ, SDClip-H and L²QER are invariant
to that scale.)
"""

from __future__ import annotations

import time
from typing import Iterable, Iterator

import torch
from torch import Tensor, nn

from golflib.progress import Progress, rank0
from golflib.runtime import all_reduce_sum


class HessianCollector:
    """Context manager accumulating ``Σ xᵀx`` (float32, on the model's device) per Linear weight name.

    ``sums[name]`` is ``[in, in]``, ``counts[name]`` the number of input rows (tokens × calls) seen.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}
        self._handles: list = []

    def _hook(self, name: str):
        def fn(module: nn.Module, args: tuple, _out) -> None:
            x = args[0].detach()
            x = x.reshape(-1, x.shape[-1]).float()
            self.add(name, x)
        return fn

    def add(self, name: str, x: Tensor) -> None:
        """Accumulate the rows of ``x`` ``[n, in]`` into the Hessian of weight ``name``."""
        x = x.reshape(-1, x.shape[-1]).float()
        if name not in self.sums:
            self.sums[name] = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float32, device=x.device)
            self.counts[name] = 0
        self.sums[name].addmm_(x.T, x)
        self.counts[name] += x.shape[0]

    def __enter__(self) -> "HessianCollector":
        for mname, module in self.model.named_modules():
            if isinstance(module, nn.Linear):
                key = f"{mname}.weight" if mname else "weight"
                self._handles.append(module.register_forward_hook(self._hook(key)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def hessians(self, distributed: bool = False, divisor: int | None = None) -> dict[str, Tensor]:
        """``{weight name: H = Σxᵀx / n}`` (float32 on CPU): ``n`` is ``divisor`` (e.g. the number of calibration
        batches) or, when None, the number of input rows. With ``distributed``, sums and ``n`` are first
        all-reduced over ranks (every rank must call this with the same set of names)."""
        out = {}
        for name in sorted(self.sums):
            s = self.sums[name]
            n = torch.tensor([float(self.counts[name] if divisor is None else divisor)], device=s.device)
            if distributed:
                all_reduce_sum(s)
                all_reduce_sum(n)
            out[name] = (s / n.clamp_min(1.0)).cpu()
        return out


def add_damping(h: Tensor, rel: float, floor: float = 1e-6) -> Tensor:
    """``H + rel·max(mean(diag H), floor)·I`` in H's dtype — the damping #1019 adds when it collects a Hessian,
    before GPTQ's own (so a dead input column is no longer dead). ``rel = 0`` returns ``h`` itself."""
    if rel == 0:
        return h
    h = h.clone()
    h += rel * torch.diag(h).mean().clamp_min(floor) * torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    return h


def head_weight_name(model: nn.Module) -> str:
    """State-dict name of the logit projection: ``lm_head.weight`` if the model has one, else the tied
    ``tok_emb.weight``."""
    return "lm_head.weight" if getattr(model, "lm_head", None) is not None else "tok_emb.weight"


@torch.no_grad()
def collect_hessians(model: nn.Module, batches: Iterable[Tensor], *, distributed: bool = False,
                     autocast_ctx=None, head: bool = True, total: int | None = None) -> tuple[dict[str, Tensor], dict]:
    """Run ``model.hidden(x)`` for every ``x`` (int64 ``[B, T]`` token ids, or a pair ``(x, doc_ids)`` from a
    document-packing loader, so calibration sees the same attention masks as training) and return
    ``(hessians, stats)``.

    ``hessians`` maps weight names to ``H = Σ XᵀX / n_batches`` ``[in, in]`` (CPU float32; with ``distributed``
    sums and batch counts all-reduced), including the head (final-norm output) unless ``head`` is False (no GPTQ on
    the embedding, #1019/#1487). ``stats``: ``{"batches", "tokens", "seconds"}`` (wall time of the forward passes,
    including reading the batches from the iterator; batches and tokens of this rank). The model's train/eval mode
    is restored afterwards. ``total`` (default ``len(batches)`` when it has one) sizes the progress report
    (:mod:`golflib.progress`, rank 0).
    """
    was_training = model.training
    model.eval()
    head_name = head_weight_name(model)
    t0 = time.perf_counter()
    n_batches = n_tokens = 0
    col = HessianCollector(model)
    total = total if total is not None else (len(batches) if hasattr(batches, "__len__") else 0)
    try:
        with col, Progress(total, "gptq/calibration", "batches", enabled=rank0()) as prog:
            for item in prog.wrap(batches):
                x, doc_ids = item if isinstance(item, tuple) else (item, None)
                if autocast_ctx is not None:
                    with autocast_ctx():
                        h = model.hidden(x, doc_ids=doc_ids)
                else:
                    h = model.hidden(x, doc_ids=doc_ids)
                if head:
                    col.add(head_name, h)
                n_batches += 1
                n_tokens += x.numel()
    finally:
        model.train(was_training)
    hs = col.hessians(distributed=distributed, divisor=n_batches)
    return hs, {"batches": n_batches, "tokens": n_tokens, "seconds": time.perf_counter() - t0}


def train_batches(loader, n_batches: int, batch_tokens: int, seq_len: int, accum: int = 1, *,
                  doc_ids: bool = True) -> Iterator:
    """``n_batches`` input batches from a training loader with the training step's micro-batch shape
    (``loader.next_batch(batch_tokens, seq_len, accum)`` → ``(x, y, doc_ids)``): ``x``, or ``(x, doc_ids)`` when
    the loader packs documents and ``doc_ids`` is True (False: dense causal attention over the packed rows, as
    #1855 calibrates)."""
    for _ in range(n_batches):
        x, _y, ids = loader.next_batch(batch_tokens, seq_len, accum)
        yield x if ids is None or not doc_ids else (x, ids)


@torch.no_grad()
def ar_batches(model: nn.Module, n_seqs: int, seq_len: int, *, batch_seqs: int = 8, temperature: float = 0.8,
               seed: int = 0, device: torch.device | str = "cpu") -> Iterator[Tensor]:
    """AR self-generated calibration (#1019): yield batches ``[≤batch_seqs, seq_len]`` of token ids the model
    samples itself, first token uniform over the vocabulary, then ``softmax(logits / temperature)`` sampling with
    a fixed-seed generator. The full prefix is re-run at every step (no KV cache), so cost grows as ``seq_len²``.
    """
    if n_seqs < 1 or seq_len < 1 or batch_seqs < 1 or temperature <= 0:
        raise ValueError(f"AR calibration: n_seqs={n_seqs}, seq_len={seq_len}, batch_seqs={batch_seqs}, "
                         f"temperature={temperature}: all must be > 0")
    vocab = model.cfg.vocab_size
    gen = torch.Generator(device="cpu").manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        done = 0
        while done < n_seqs:
            b = min(batch_seqs, n_seqs - done)
            ids = torch.randint(0, vocab, (b, 1), generator=gen)
            for _ in range(seq_len - 1):
                logits = model.logits(ids.to(device))[:, -1, :].float().cpu()
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=gen)
                ids = torch.cat([ids, nxt], dim=1)
            done += b
            yield ids.to(device)
    finally:
        model.train(was_training)


def ar_calibration_inputs(model: nn.Module, n_seqs: int, seq_len: int, **kw) -> list[Tensor]:
    """#1019's calibration inputs: every :func:`ar_batches` sequence (same arguments), generated **before** any
    Hessian hook is installed (a lazy generator would run its sampling forwards under the hooks), then one at a time
    as ``[1, seq_len − 1]`` without the last sampled token (the record's Hessian model reads ``seq[:, :-1]``), so
    :func:`collect_hessians` divides by the number of sequences as the record does."""
    return [batch[i:i + 1, :-1] for batch in ar_batches(model, n_seqs, seq_len, **kw) for i in range(batch.shape[0])]
