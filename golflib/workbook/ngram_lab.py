"""What eval-time n-gram mixing is worth on a trained artifact (``notebooks/40_ngram.ipynb``).

The mixer never changes the logits a protocol produces (TTT adapters train on the model's own loss), so a
protocol's scored logits are recorded once (:class:`LogitRecorder`, a mixer-shaped hook) and any number of mixers
are replayed over them (:func:`replay`) in the protocol's own scoring order, with a ledger whose declared order is
that recorded order: a sweep over orders × α schedules × tilt costs one model pass per protocol. A replay equals the
live protocol with the same mixer (tested). On top: the gain split by position buckets (the highest order whose
context had been seen — "repeated spans" when it is the longest), the #940 hashed blend's implied mass next to
golflib's, and throughput.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from golflib.config import Config
from golflib.data.bytecount import ByteCounter, load_byte_counter
from golflib.data.loader import load_validation_tokens
from golflib.eval.bpb import BPBAccumulator
from golflib.eval.context import ScoringContext
from golflib.eval.ledger import Ledger
from golflib.eval.ngram import NgramMixer
from golflib.eval.ngram_eval import eval_with_mixer
from golflib.eval.sliding import sliding_windows, window_batches
from golflib.eval.protocols import eval_window
from golflib.quant.export import load_artifact_model
from golflib.runtime import synchronize
from golflib.workbook.audit import slice_config
from golflib.eval.ttt_common import doc_segments
from golflib.workbook.ngram940 import score_940
from golflib.workbook.runs import find_artifact

LN2 = math.log(2.0)


@dataclass
class Source:
    """A run's artifact model, config, byte LUTs and val stream (``tokens`` int64 ``[n + 1]``)."""

    run_dir: Path
    cfg: Config
    model: torch.nn.Module
    luts: ByteCounter
    tokens: torch.Tensor

    @property
    def vocab_size(self) -> int:
        return self.cfg.model.vocab_size


def load_source(run_dir, val_max_tokens: int = 0, overrides: dict | None = None) -> Source:
    """Load ``run_dir``'s primary artifact and its val stream truncated at the eval window length (and to
    ``val_max_tokens`` targets when > 0 — then not a val_bpb, a quick slice; 0 keeps the run's VAL_MAX_TOKENS).
    TTT settings are scaled to the slice as in ``golf audit``."""
    run_dir = Path(run_dir)
    cfg = Config.from_json_file(run_dir / "config.json").replace(overrides or {})
    L = eval_window(cfg)
    tokens = load_validation_tokens(cfg.data.val_glob, L, cfg.model.vocab_size,
                                    val_max_tokens or cfg.train.val_max_tokens)
    cfg = slice_config(cfg, tokens.numel() - 1, len(doc_segments(tokens, cfg.model.bos_id)))
    return Source(run_dir, cfg, load_artifact_model(find_artifact(run_dir)),
                  load_byte_counter(cfg.data, cfg.model.vocab_size, cfg.model.bos_id), tokens)


class LogitRecorder:
    """A hook with the mixer's signature that stores every scored batch — ``(positions, fp32 logits [n, V],
    targets)`` — and returns the model's own NLL (and log-softmax rows when asked): the protocol scores exactly as
    without a mixer. Memory: ``4·V`` bytes per scored target."""

    def __init__(self):
        self.batches: list[tuple[np.ndarray, torch.Tensor, torch.Tensor]] = []

    @torch.no_grad()
    def __call__(self, positions, logits, targets, ledger=None, rows: bool = False):
        if ledger is not None:  # a mixer-shaped hook records the scoring (the protocol leaves it to the hook)
            ledger.score(positions)
        self.batches.append((np.asarray(positions, dtype=np.int64).copy(), logits.detach().float().cpu().clone(),
                             targets.detach().cpu().to(torch.int64).clone()))
        nll = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        return nll, (torch.log_softmax(logits.float(), dim=-1) if rows else None)

    def summary(self) -> dict:
        return {"recorded_batches": len(self.batches), "recorded_positions": sum(b[0].size for b in self.batches)}


@dataclass
class Recording:
    """The scored logits of one protocol run: ``batches`` in scoring order, the run's own (model-only) result."""

    protocol: str
    batches: list
    result: dict
    seconds: float
    windows: list = field(default_factory=list)  # sliding only: scored segment lengths per batch (#940's update unit)

    @property
    def n_scored(self) -> int:
        return sum(b[0].size for b in self.batches)


def record(source: Source, protocol: str = "sliding") -> Recording:
    """Run ``protocol`` (sliding | chunked | lora | phased) on a copy of the source model with a
    :class:`LogitRecorder` as its hook."""
    rec = LogitRecorder()
    t0 = time.perf_counter()
    res = eval_with_mixer(protocol, copy.deepcopy(source.model), source.tokens, source.luts, source.cfg,
                          ScoringContext(mixer=rec))
    out = Recording(protocol, rec.batches, {"val_bpb": res.val_bpb, "val_loss": res.val_loss,
                                            "legal": res.ledger["legal"], "mode": res.mode.removesuffix("+ngram")},
                    time.perf_counter() - t0)
    if protocol == "sliding":
        L, c = eval_window(source.cfg), source.cfg.eval
        wins = window_batches(sliding_windows(source.tokens.numel() - 1, L, c.eval_stride or L), c.eval_batch_seqs)
        out.windows = [[w.length - w.score_from for w in b] for b in wins]
    return out


def replay(recording: Recording, source: Source, mixer: NgramMixer | None = None, mass_rows: int = 0) -> dict:
    """Score the recorded batches again, through ``mixer`` (None: the model alone), in the recorded order, with a
    strict ledger declaring that order. Returns ``{"val_bpb", "val_loss", "tokens", "bytes", "seconds", "legal",
    "ledger", "ngram" (mixer summary or None), "masses" (Σ_v of ``mass_rows`` mixed rows per batch)}``."""
    toks = source.tokens
    n = toks.numel() - 1
    order = np.full(n, -1, dtype=np.int64)
    seq = np.concatenate([b[0] for b in recording.batches])
    order[seq] = np.arange(seq.size)
    order[order < 0] = np.arange(seq.size, seq.size + int((order < 0).sum()))
    ledger = Ledger(n, order=order)
    acc = BPBAccumulator("cpu")
    masses = []
    t0 = time.perf_counter()
    for pos, logits, y in recording.batches:
        if mass_rows and mixer is not None:
            pick = np.unique(np.linspace(0, pos.size - 1, min(mass_rows, pos.size)).round().astype(int))
            masses.append(mixer.distribution(pos[pick], logits[pick])["probs"].sum(1).numpy())
        if mixer is None:
            ledger.score(pos)
            nll = torch.nn.functional.cross_entropy(logits, y, reduction="none")
        else:  # the mixer records the scoring block by block
            nll, _ = mixer(pos, logits, y, ledger)
        t = torch.from_numpy(pos)
        acc.add(nll, toks[t], toks[t + 1], source.luts, t)
    rep = ledger.report()
    res = acc.result("replay", time.perf_counter() - t0, rep)
    return {"val_bpb": res.val_bpb, "val_loss": res.val_loss, "tokens": res.tokens, "bytes": res.bytes,
            "seconds": res.seconds, "legal": rep["legal"], "ledger": rep,
            "ngram": mixer.summary() if mixer is not None else None,
            "masses": np.concatenate(masses) if masses else np.zeros(0)}


def make_mixer(source: Source, **settings) -> NgramMixer:
    """An :class:`NgramMixer` over the source stream (BOS-bounded contexts) with ``settings`` (its keyword
    arguments: ``orders``, ``schedule``, ``alpha``, ``tilt_beta``, …)."""
    return NgramMixer(source.tokens, source.vocab_size, bos_id=source.cfg.model.bos_id, **settings)


def grid_points(max_orders, schedules, tilt_betas=(0.0,), min_order: int = 2) -> list[dict]:
    """Mixer settings for every (max order, schedule, tilt β): orders ``min_order..max_order``."""
    return [{"orders": tuple(range(min_order, m + 1)), "schedule": s, "tilt_beta": float(b)}
            for m in max_orders for s in schedules for b in tilt_betas]


def sweep(recording: Recording, source: Source, points: list[dict]) -> list[dict]:
    """Replay every mixer setting in ``points`` plus the model alone; rows ``{"protocol", "max_order",
    "schedule", "tilt_beta", "val_bpb", "delta_bpb", "mean_alpha", "tilt_rate", "tokens_per_second", "legal"}``
    (the first row is the model alone, ``schedule`` "model")."""
    base = replay(recording, source)
    rows = [{"protocol": recording.protocol, "max_order": 0, "schedule": "model", "tilt_beta": 0.0,
             "val_bpb": base["val_bpb"], "delta_bpb": 0.0, "mean_alpha": 0.0, "tilt_rate": 0.0,
             "tokens_per_second": None, "legal": base["legal"]}]
    for pt in points:
        r = replay(recording, source, make_mixer(source, **pt))
        ng = r["ngram"]
        rows.append({"protocol": recording.protocol, "max_order": max(pt["orders"]), "schedule": pt["schedule"],
                     "tilt_beta": pt.get("tilt_beta", 0.0), "val_bpb": r["val_bpb"],
                     "delta_bpb": r["val_bpb"] - base["val_bpb"], "mean_alpha": ng["mean_alpha"],
                     "tilt_rate": ng["tilt_rate"], "tokens_per_second": ng["tokens_per_second"], "legal": r["legal"]})
    return rows


def best_point(rows: list[dict]) -> dict:
    """The row with the lowest val_bpb among mixer rows."""
    return min((r for r in rows if r["schedule"] != "model"), key=lambda r: r["val_bpb"])


def bucket_gains(recording: Recording, source: Source, **settings) -> list[dict]:
    """The gain of one mixer split by the highest n-gram order whose context had been seen at the position
    (prefix-only; ``0`` = none, the cache can only offer its unigram). The top bucket — the longest context
    repeating text seen earlier — is the "repeated span" bucket. Rows ``{"bucket", "hit_order", "positions",
    "share_positions", "share_bytes", "bpb_model", "bpb_mix", "delta_bpb_contribution"}`` (contributions sum to the
    total Δbpb), then two summary rows: ``repeated`` (top order) and ``not repeated`` (everything else)."""
    mixer = make_mixer(source, record=True, **settings)
    replay(recording, source, mixer)
    rec = mixer.recorded()
    t = torch.from_numpy(rec["positions"].astype(np.int64))
    nbytes = source.luts.target_bytes(source.tokens[t], source.tokens[t + 1], t).double().numpy()
    total_bytes = nbytes.sum()
    top = max(mixer.counts.orders)

    def row(name, mask, hit):
        b = nbytes[mask].sum()
        nm, nx = rec["nll_model"][mask].sum(), rec["nll_mix"][mask].sum()
        return {"bucket": name, "hit_order": hit, "positions": int(mask.sum()),
                "share_positions": float(mask.mean()), "share_bytes": float(b / total_bytes),
                "bpb_model": float(nm / (LN2 * b)) if b else float("nan"),
                "bpb_mix": float(nx / (LN2 * b)) if b else float("nan"),
                "delta_bpb_contribution": float((nx - nm) / (LN2 * total_bytes))}

    rows = [row("no context seen" if o == 0 else f"order {o}", rec["hit_order"] == o, int(o))
            for o in (0, *mixer.counts.orders) if (rec["hit_order"] == o).any()]
    rows.append(row(f"repeated (order {top} context seen)", rec["hit_order"] == top, top))
    rows.append(row("not repeated", rec["hit_order"] != top, -1))
    return rows


def implied_mass_rows(recording: Recording, source: Source, buckets_list, mass_rows: int = 4,
                      golf_settings: dict | None = None) -> dict:
    """The #940 hashed blend replayed on the recorded sliding-window logits for each bucket count in
    ``buckets_list`` (its val_bpb as *reported* and Σ_v of its implied "distribution" at ``mass_rows`` rows per
    batch), and golflib's mixer (``golf_settings``) on the same rows. Returns ``{"940": [{"buckets",
    "load_factor", "val_bpb", "masses", "c2_violations", "matched_rate"}, ...], "golflib": {"val_bpb", "masses",
    "c2_violations"}, "model_bpb"}``. Raises ``ValueError`` for a recording that is not sliding."""
    if recording.protocol != "sliding" or not recording.windows:
        raise ValueError("implied_mass_rows needs a sliding-window recording (its window segments)")
    out = {"940": [], "model_bpb": recording.result["val_bpb"]}
    for b in buckets_list:
        batches = ((pos, lg, y, segs) for (pos, lg, y), segs in zip(recording.batches, recording.windows))
        r = score_940(batches, source.tokens, source.luts, buckets=int(b), mass_rows=mass_rows)
        out["940"].append({"buckets": int(b), "load_factor": r["load_factor"], "val_bpb": r["val_bpb"],
                           "masses": r["masses"], "c2_violations": r["ledger"]["violation_counts"]["C2"],
                           "matched_rate": r["matched_rate"], **_mass_stats(r["masses"])})
    g = replay(recording, source, make_mixer(source, **(golf_settings or {})), mass_rows=mass_rows)
    out["golflib"] = {"val_bpb": g["val_bpb"], "masses": g["masses"],
                      "c2_violations": g["ledger"]["violation_counts"]["C2"], **_mass_stats(g["masses"])}
    return out


def _mass_stats(m: np.ndarray) -> dict:
    if m.size == 0:
        return {"mass_min": None, "mass_mean": None, "mass_median": None, "mass_max": None}
    return {"mass_min": float(m.min()), "mass_mean": float(m.mean()), "mass_median": float(np.median(m)),
            "mass_max": float(m.max())}


def challenge_buckets(n_targets: int, load_factor: float = 62_021_632 / 4_194_304) -> int:
    """The power-of-two bucket count giving this stream the load factor (targets per bucket) #940 ran at on the
    challenge's val set (62,021,632 targets in 4,194,304 buckets ≈ 14.8)."""
    return 1 << max(0, int(round(math.log2(max(n_targets / load_factor, 1.0)))))


def mixer_throughput(vocab_size: int, n_tokens: int = 8192, seed: int = 0, batch: int = 4096,
                     device: str | None = None, **settings) -> dict:
    """Tokens/s of the mixer alone on a synthetic stream (a repeated random document with noise) and random logits
    at ``vocab_size``, on ``device`` (default: CUDA when available — the model's device in a GPU run — else the
    CPU): ``{"vocab_size", "tokens", "seconds", "tokens_per_second", "device"}``."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(seed)
    doc = rng.integers(2, vocab_size, 512)
    toks = np.concatenate([doc] * (n_tokens // 512 + 2))[:n_tokens + 1]
    noise = rng.random(toks.size) < 0.3
    toks[noise] = rng.integers(2, vocab_size, int(noise.sum()))
    toks = torch.from_numpy(toks.astype(np.int64)).to(device)
    mixer = NgramMixer(toks, vocab_size, **settings)
    g = torch.Generator().manual_seed(seed)
    dt = 0.0
    for a in range(0, n_tokens, batch):
        pos = np.arange(a, min(a + batch, n_tokens))
        logits = (torch.randn(pos.size, vocab_size, generator=g) * 2.0).to(device)
        synchronize(torch.device(device))
        t0 = time.perf_counter()
        mixer(pos, logits, toks[torch.from_numpy(pos).to(device) + 1])
        synchronize(torch.device(device))
        dt += time.perf_counter() - t0
    return {"vocab_size": vocab_size, "tokens": n_tokens, "seconds": dt, "tokens_per_second": n_tokens / dt,
            "device": str(device)}


def throughput_rows(recordings: list[Recording], sweep_rows: list[dict], vocab_sizes=(1024, 8192),
                    n_tokens: int = 8192) -> list[dict]:
    """Rows ``{"label", "tokens_per_second"}``: the mixer alone at each of ``vocab_sizes`` (synthetic stream,
    :func:`mixer_throughput`), and each recorded protocol end to end — the model's scoring time plus the mixer time
    of the best sweep point of that protocol."""
    rows = [{"label": f"mixer alone, V={v}", "tokens_per_second": mixer_throughput(v, n_tokens)["tokens_per_second"]}
            for v in vocab_sizes]
    for rec in recordings:
        pr = [r for r in sweep_rows if r["protocol"] == rec.protocol]
        n = rec.n_scored
        rows.append({"label": f"{rec.protocol}: model alone", "tokens_per_second": n / rec.seconds})
        if any(r["schedule"] != "model" for r in pr):
            best = best_point(pr)
            rows.append({"label": f"{rec.protocol}: model + mixer",
                         "tokens_per_second": n / (rec.seconds + n / best["tokens_per_second"])})
    return rows
