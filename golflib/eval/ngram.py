"""Eval-time n-gram mixing done right (SPEC §3.F4, §3.F5, §4.5): a normalised multi-order cache mixed into the
model's full distribution, with an entropy-adaptive weight and the causal exponential tilt.

The idea of the #727/#753/#940 family — back off from long to short contexts seen earlier in the scored stream and
trust them more when the model is unsure — kept, with the two faults that got it ruled out (#779, #886, #1147)
removed:

- **normalised**: for every scored position the cache emits a full distribution over the vocabulary, the
  interpolated Witten–Bell backoff of :mod:`golflib.eval.ngram_counts` (exact counts, no hashing), and the mixture
  ``p = (1 − α)·p_model + α·p_ngram`` is formed over the whole vocabulary before the target is read; NLL =
  ``−log p[y]``. Sampled rows of every mixed distribution go through
  :meth:`golflib.eval.ledger.Ledger.check_normalized` (C2);
- **causal**: ``α`` and the tilt's hint depend only on the prefix; the counts used at position ``t`` contain only
  targets scored before it: :meth:`NgramMixer.__call__` takes a batch of model logits from the protocol and, block
  by block in the evaluation order, records the block as scored in the protocol's ledger, mixes it, then adds its
  targets to the counts and records that update (C1, C3).

α schedules (``NGRAM_ALPHA_SCHEDULE``): ``entropy`` — #940's ``α = a + b·σ(s·(H − c))`` with ``(a, b, s, c) =
(0.05, 0.55, 2, 4)`` and ``H`` the entropy (nats) of the model's own distribution; ``entropy_order`` — the same with
the centre lowered by ``NGRAM_ENT_ORDER_SLOPE`` per order above the lowest for the highest order whose context has
a hit (higher orders trusted at lower entropy, the per-order centres of #798/#890), and α = 0 when no context of
any order has been seen; ``fixed`` — ``NGRAM_ALPHA`` (#778's variant 1 used 0.40); ``none`` — α = 0 (tilt only).

Tilt (#1420 → #1514, SPEC §3.F5): when the highest-order context with a hit has been seen at least
``NGRAM_TILT_MIN_COUNT`` times and its most frequent follower ``h`` has maximum-likelihood probability ≥
``NGRAM_TILT_TAU``, the model distribution is tilted ``p'(v) = p(v)·e^{β·1[v=h]} / Z``, ``Z = 1 + p(h)(e^β − 1)``
(#1514 used β = 2 on a hashed order-16 "token expert"; here the expert is the exact cache) before the mixture.

Device: the counts and every ``[n, V]`` row of the mixture live on the mixer's ``device`` — the model's, by default
the device of the stream it is built on (``mixer_from_config`` takes the run's), so on a GPU run the softmax,
entropy, tilt and mixture run next to the logits in float64, and only per-row scalars come back for the ledger.
"""


from __future__ import annotations

import math
import time

import numpy as np
import torch

from golflib.eval.ledger import Ledger, check_distribution
from golflib.eval.ngram_counts import NgramCounts

ALPHA_SCHEDULES = ("entropy", "entropy_order", "fixed", "none")
ROW_BUDGET = 1 << 21  # elements per [rows, V] float64 block (16 MiB): rows processed per block = ROW_BUDGET // V


def entropy_alpha(entropy: torch.Tensor, base: float = 0.05, span: float = 0.55, scale: float = 2.0,
                  center: float | torch.Tensor = 4.0) -> torch.Tensor:
    """#940's schedule ``α = base + span · σ(scale · (H − center))``; ``entropy`` in nats (any shape)."""
    return base + span * torch.sigmoid(scale * (entropy - center))


class NgramMixer:
    """The hook a scoring protocol calls once per scored batch (see the module docstring).

    ``tokens``: the evaluation stream (int ``[n_targets + 1]``); ``vocab_size``: V. ``orders``: n-gram orders ≥ 2.
    ``schedule``/``alpha``/``ent_*``: the α schedule. ``tilt_beta`` (0 = off), ``tilt_tau``, ``tilt_min_count``:
    the tilt. ``update_every``: positions scored between two additions to the counts (0: one addition per call;
    #940 updated after every 64-token window segment). ``check_rows``: mixed rows per call passed to the ledger's
    C2 check. ``bos_id``: contexts stop at a document's BOS. ``record``: keep per-position arrays (model NLL, mixed
    NLL, α, hit order) for analysis. ``device``: where the counts and the mixture live (default: the stream's).
    Raises ``ValueError`` for an unknown schedule or out-of-range settings.
    """

    def __init__(self, tokens, vocab_size: int, *, orders=(2, 3, 4, 5, 6, 7), schedule: str = "entropy",
                 alpha: float = 0.4, ent_base: float = 0.05, ent_span: float = 0.55, ent_scale: float = 2.0,
                 ent_center: float = 4.0, ent_order_slope: float = 0.25, tilt_beta: float = 0.0,
                 tilt_tau: float = 0.5, tilt_min_count: int = 2, update_every: int = 64, check_rows: int = 2,
                 bos_id: int | None = None, record: bool = False, device: torch.device | str | None = None):
        if schedule not in ALPHA_SCHEDULES:
            raise ValueError(f"NGRAM_ALPHA_SCHEDULE={schedule!r}: expected one of {', '.join(ALPHA_SCHEDULES)}")
        if not 0.0 <= alpha <= 1.0 or not (0.0 <= ent_base and ent_base + ent_span <= 1.0 and ent_span >= 0.0):
            raise ValueError(f"n-gram α settings out of [0, 1]: alpha={alpha}, ent_base={ent_base}, "
                             f"ent_span={ent_span}")
        self.counts = NgramCounts(tokens, vocab_size, orders, bos_id, device=device)
        self.device = self.counts.device
        self.V = int(vocab_size)
        self.schedule, self.alpha = schedule, float(alpha)
        self.ent = dict(base=float(ent_base), span=float(ent_span), scale=float(ent_scale), center=float(ent_center))
        self.ent_order_slope = float(ent_order_slope)
        self.tilt_beta, self.tilt_tau, self.tilt_min_count = float(tilt_beta), float(tilt_tau), int(tilt_min_count)
        if update_every < 0 or check_rows < 0:
            raise ValueError(f"NGRAM_UPDATE_EVERY={update_every} and NGRAM_CHECK_ROWS={check_rows} must be >= 0")
        self.update_every = int(update_every)
        self.check_rows = int(check_rows)
        self.record = record
        self._rec: dict[str, list[torch.Tensor]] = {k: [] for k in ("positions", "nll_model", "nll_mix", "alpha",
                                                                      "hit_order", "tilted")}
        # running sums on the device (read at summary(): no host sync per block)
        self._sums = torch.zeros(5, dtype=torch.float64, device=self.device)  # nll_model, nll_mix, α, tilted, hint ok
        self._hits = torch.zeros(max(self.counts.orders) + 1, dtype=torch.int64, device=self.device)
        self.stats = {"positions": 0, "calls": 0, "c2_rows": 0, "c2_max_abs_sum_error": 0.0, "c2_min_prob": 1.0,
                      "seconds": 0.0}

    def settings(self) -> dict:
        return {"orders": list(self.counts.orders), "schedule": self.schedule, "alpha": self.alpha,
                **{f"ent_{k}": v for k, v in self.ent.items()}, "ent_order_slope": self.ent_order_slope,
                "tilt_beta": self.tilt_beta, "tilt_tau": self.tilt_tau, "tilt_min_count": self.tilt_min_count,
                "update_every": self.update_every, "device": str(self.device),
                "smoothing": "interpolated Witten-Bell (exact counts)", "bos_id": self.counts.bos_id}

    # ---- the distribution ----------------------------------------------------------------------------------
    def _alpha(self, entropy: torch.Tensor, hit_order: torch.Tensor) -> torch.Tensor:
        if self.schedule == "none":
            return torch.zeros_like(entropy)
        if self.schedule == "fixed":
            return torch.full_like(entropy, self.alpha)
        if self.schedule == "entropy":
            return entropy_alpha(entropy, self.ent["base"], self.ent["span"], self.ent["scale"], self.ent["center"])
        order = hit_order.to(entropy.dtype)
        center = self.ent["center"] - self.ent_order_slope * (order - self.counts.orders[0])
        a = entropy_alpha(entropy, self.ent["base"], self.ent["span"], self.ent["scale"], center)
        return torch.where(order > 0, a, torch.zeros_like(a))

    def distribution(self, positions, logits: torch.Tensor) -> dict:
        """The mixed distribution for ``positions`` (int ``[n]``) given the model's fp32 logits ``[n, V]`` and
        the current counts (nothing is updated). Returns ``{"probs": float64 [n, V], "log_model": float64
        [n, V], "alpha", "entropy", "hit_order", "hint", "log_z"}`` (per-row tensors), all on the mixer's device.
        Pure function of the prefix: it never reads a target."""
        pos = positions if isinstance(positions, torch.Tensor) else torch.as_tensor(np.asarray(positions))
        pos = pos.to(self.device, torch.int64).reshape(-1)
        logp = torch.log_softmax(logits.detach().to(self.device, torch.float64), dim=-1)
        p_model = logp.exp()
        entropy = -(p_model * logp).sum(-1)
        tilt = self.tilt_beta > 0
        p_ng, hit_order, hint, hint_prob, hint_count = self.counts.distribution(pos, with_hint=tilt)
        alpha = self._alpha(entropy, hit_order)
        log_z = torch.zeros(pos.numel(), dtype=torch.float64, device=self.device)
        q = p_model
        if tilt:
            gate = (hint >= 0) & (hint_prob >= self.tilt_tau) & (hint_count >= self.tilt_min_count)
            rows = torch.nonzero(gate).squeeze(-1)
            if rows.numel():
                h = hint[rows]
                ph = p_model[rows, h]
                z = 1.0 + ph * math.expm1(self.tilt_beta)
                q = p_model.clone()
                q[rows] /= z[:, None]
                q[rows, h] = ph * math.exp(self.tilt_beta) / z
                log_z[rows] = torch.log(z)
            hint = torch.where(gate, hint, -1)
        else:
            hint = torch.full((pos.numel(),), -1, dtype=torch.int64, device=self.device)
        probs = (1.0 - alpha)[:, None] * q + alpha[:, None] * p_ng
        return {"probs": probs, "log_model": logp, "alpha": alpha, "entropy": entropy, "hit_order": hit_order,
                "hint": hint, "log_z": log_z}

    # ---- the hook ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, positions, logits: torch.Tensor, targets: torch.Tensor, ledger: Ledger | None = None,
                 rows: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Score a batch of positions whose model logits the protocol has just computed, in blocks of
        ``update_every`` rows (all rows when 0), in the given row order: for each block, record it as scored in
        ``ledger``, mix, take ``−log p[y]``, then add the block's targets to the counts and record that update
        (persistent: the cache is never reset). The next block is mixed with counts that include the previous
        blocks — positions earlier in the evaluation order, so rows must come in that order (the ledger's C1 check
        enforces it). ``positions`` int ``[n]`` (row order of ``logits``), ``logits`` fp32 ``[n, V]``, ``targets``
        int ``[n]``. Returns ``(nll, logp_rows)``: fp32 NLL in nats ``[n]`` on ``logits.device`` and, with ``rows``,
        the mixed log-probability rows fp32 ``[n, V]`` on ``logits.device`` (else None). Raises ``ValueError`` for
        mismatched shapes or targets that are not ``tokens[positions + 1]`` of the mixer's stream."""
        t0 = time.perf_counter()
        pos_np = np.asarray(positions.detach().cpu().numpy() if hasattr(positions, "detach") else positions,
                            dtype=np.int64).reshape(-1)
        pos = torch.as_tensor(pos_np, device=self.device)
        y = targets.detach().to(self.device, torch.int64).reshape(-1)
        n = pos_np.size
        if logits.shape != (n, self.V) or y.numel() != n:
            raise ValueError(f"NgramMixer: expected logits [{n}, {self.V}] and {n} targets, got "
                             f"{tuple(logits.shape)} and {y.numel()}")
        if n and not torch.equal(y, self.counts.tokens[pos + 1]):
            raise ValueError("NgramMixer: targets do not match tokens[positions + 1] of the stream it was built on")
        nll = torch.empty(n, dtype=torch.float64, device=self.device)
        out_rows = torch.empty(n, self.V, dtype=torch.float32, device=logits.device) if rows else None
        block = self.update_every or max(n, 1)
        step = max(1, min(block, ROW_BUDGET // self.V))
        checks = set(np.linspace(0, n - 1, min(self.check_rows, n)).round().astype(int).tolist()) if n else set()
        for s0 in range(0, n, block):
            s1 = min(s0 + block, n)
            if ledger is not None:
                ledger.score(pos_np[s0:s1])
            for a in range(s0, s1, step):
                b = min(a + step, s1)
                d = self.distribution(pos[a:b], logits[a:b])
                p = d["probs"]
                nll[a:b] = -torch.log(p.gather(1, y[a:b, None]).squeeze(1))
                if rows:
                    out_rows[a:b] = torch.log(p).float().to(logits.device)
                self._accumulate(pos[a:b], d, y[a:b], nll[a:b])
                local = [i - a for i in sorted(checks) if a <= i < b]
                if local:
                    sel = torch.tensor(local, device=self.device)
                    self._check(p[sel], pos_np[a:b][local], ledger, nll[a:b][sel], y[a:b][sel])
            self.counts.add(pos[s0:s1])  # after scoring: the block's targets become cache statistics
            if ledger is not None:
                ledger.update(pos_np[s0:s1], persistent=True)
        self.stats["calls"] += 1
        self.stats["positions"] += n
        self.stats["seconds"] += time.perf_counter() - t0
        return nll.to(device=logits.device, dtype=torch.float32), out_rows

    def _check(self, sample: torch.Tensor, positions: np.ndarray, ledger: Ledger | None, nll: torch.Tensor,
               targets: torch.Tensor) -> None:
        c2 = (ledger.check_normalized(sample, positions, nll=nll, targets=targets) if ledger is not None
              else check_distribution(sample))
        self.stats["c2_rows"] += int(sample.shape[0])
        self.stats["c2_max_abs_sum_error"] = max(self.stats["c2_max_abs_sum_error"], c2["max_abs_sum_error"])
        self.stats["c2_min_prob"] = min(self.stats["c2_min_prob"], c2["min_prob"])

    def _accumulate(self, pos: torch.Tensor, d: dict, y: torch.Tensor, nll: torch.Tensor) -> None:
        nll_model = -d["log_model"].gather(1, y[:, None]).squeeze(1)
        tilted = d["hint"] >= 0
        self._sums += torch.stack([nll_model.sum(), nll.sum(), d["alpha"].sum(), tilted.sum().double(),
                                   (tilted & (d["hint"] == y)).sum().double()])
        self._hits += torch.bincount(d["hit_order"], minlength=self._hits.numel())
        if self.record:
            for k, v in (("positions", pos), ("nll_model", nll_model), ("nll_mix", nll), ("alpha", d["alpha"]),
                         ("hit_order", d["hit_order"]), ("tilted", tilted)):
                self._rec[k].append(v.detach().clone())

    def recorded(self) -> dict[str, np.ndarray]:
        """Per-position arrays gathered with ``record=True`` (sorted by position): ``positions``, ``nll_model``
        and ``nll_mix`` (nats), ``alpha``, ``hit_order``, ``tilted`` (host numpy). Raises ``RuntimeError`` without
        ``record``."""
        if not self.record:
            raise RuntimeError("NgramMixer was built without record=True")
        out = {k: torch.cat(v).cpu().numpy() if v else np.zeros(0) for k, v in self._rec.items()}
        order = np.argsort(out["positions"], kind="stable")
        return {k: v[order] for k, v in out.items()}

    def summary(self) -> dict:
        """Settings and running statistics: mean model / mixed NLL (nats) over the positions mixed so far, mean
        α, positions per hit order, tilt rate and hint accuracy, rows passed through the C2 check and their worst
        sum error, seconds spent in the mixer and its throughput (positions/s)."""
        s = dict(self.stats)
        nll_model, nll_mix, alpha_sum, tilted, hint_ok = self._sums.tolist()
        hits = self._hits.tolist()
        n = max(s["positions"], 1)
        s.update({"nll_model": nll_model, "nll_mix": nll_mix, "alpha_sum": alpha_sum, "tilted": int(tilted),
                  "hint_correct": int(hint_ok), "mean_nll_model": nll_model / n, "mean_nll_mix": nll_mix / n,
                  "mean_alpha": alpha_sum / n, "tilt_rate": tilted / n, "hint_accuracy": hint_ok / max(tilted, 1),
                  "tokens_per_second": s["positions"] / max(s["seconds"], 1e-9),
                  "hit_order_counts": {str(o): hits[o] for o in (0, *self.counts.orders)}})
        return {"settings": self.settings(), **s}


def mixer_from_config(ncfg, tokens, vocab_size: int, bos_id: int | None, record: bool = False,
                      device: torch.device | str | None = None) -> NgramMixer:
    """An :class:`NgramMixer` with the settings of :class:`golflib.settings.scoring.NgramConfig` ``ncfg``, on
    ``device`` (the model's; default: the stream's)."""
    return NgramMixer(tokens, vocab_size, orders=ncfg.ngram_orders, schedule=ncfg.ngram_alpha_schedule,
                      alpha=ncfg.ngram_alpha, ent_base=ncfg.ngram_ent_base, ent_span=ncfg.ngram_ent_span,
                      ent_scale=ncfg.ngram_ent_scale, ent_center=ncfg.ngram_ent_center,
                      ent_order_slope=ncfg.ngram_ent_order_slope, tilt_beta=ncfg.ngram_tilt_beta,
                      tilt_tau=ncfg.ngram_tilt_tau, tilt_min_count=ncfg.ngram_tilt_min_count,
                      update_every=ncfg.ngram_update_every, check_rows=ncfg.ngram_check_rows,
                      bos_id=bos_id if ncfg.ngram_doc_contexts else None,
                      record=record, device=device)


MIXERS: dict = {"builtin": mixer_from_config}  # NGRAM_MIXER names (golflib.plugins.register_mixer adds more)


def build_mixer(ncfg, tokens, vocab_size: int, bos_id: int | None, record: bool = False,
                device: torch.device | str | None = None):
    """The mixer ``NGRAM_MIXER`` names, built by its factory (:func:`mixer_from_config` for ``builtin``). Raises
    ``ValueError`` naming ``NGRAM_MIXER`` and the registered names for an unknown one."""
    if ncfg.ngram_mixer not in MIXERS:
        raise ValueError(f"NGRAM_MIXER={ncfg.ngram_mixer!r} is not registered (registered: {', '.join(MIXERS)}); a "
                         f"plugin registers it with golflib.plugins.register_mixer (set EVAL_PLUGINS)")
    return MIXERS[ncfg.ngram_mixer](ncfg, tokens, vocab_size, bos_id, record=record, device=device)
