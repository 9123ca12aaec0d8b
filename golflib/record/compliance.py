"""Budget, legality and log checks of a record, per seed, from the runs' logs and results (SPEC §4.1, §4.8 item 1,
§5.4, §5.5, traps 7, 8, 11).

Per seed: ``bytes_total = code bytes of the record's train_gpt.py + artifact bytes < 16,000,000`` (decimal; the
artifact file on disk must have the logged size); every byte target in the config is decimal (a MiB-style target,
``X * 1024 * 1024`` as in #1019, or one above the limit is refused); training ≤ 600 s *including* calibration that
reads training data (the later of the training clock and ``train_data_last_read_ms``); evaluation ≤ 600 s for the
whole post-training pass (``total_eval_time``); every stored legality report is clean (C1-C4, every target scored
once); the score is on the full validation split; every metric line of the log carries ``eval_mode:``; the scored
protocol's exact (8-decimal) line is in the log with its eval mode; a bundled run counted the same script the
record ships. Across seeds: no seed failed or is missing (all seeds are kept, trap 11), one configuration (only
``SEED`` differs), distinct seeds; three or more seeds is reported, not required. The shipped script: no ``flag``
finding of the static lint (:mod:`golflib.record.lint`, SPEC §4.8 item 6); its ``review`` findings are listed.

On the non-record track (``track_non_record_16mb``: e.g. unlimited compute) the time limits are reported but not
required. :func:`require_compliant` raises :class:`ComplianceError` listing every failed check.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Iterable

from golflib.quant.prune import SIZE_LIMIT, parse_byte_target
from golflib.record.lint import lint_source
from golflib.record.results import SeedRun, protocol_entries, score_entry
from golflib.runlog import metric_stream

TRAIN_LIMIT_S = 600.0
EVAL_LIMIT_S = 600.0
TRACKS = ("10min_16mb", "non_record_16mb")
BYTE_TARGET_FIELDS = ("PRUNE_TARGET_BYTES",)  # config fields that are byte budgets (0 = off)
_METRIC_RE = re.compile(r"\bval_bpb:(\d+\.\d+)")
_MODE_RE = re.compile(r"\beval_mode[:=]")  # key:value as the records write it; key=value in golflib's older logs
_TRAIN_TIME_RE = re.compile(r"^step:\d+/\d+ .*\btrain_time:(\d+)ms", re.M)
_LAST_READ_RE = re.compile(r"\btrain_data_last_read_ms:(\d+)")
_EVAL_TIME_RE = re.compile(r"^total_eval_time:(\d+(?:\.\d+)?)s", re.M)
_IGNORED_KEYS = {"seed", "run_id"}  # config fields allowed to differ between the seeds of one record


class ComplianceError(ValueError):
    """A record was refused: at least one compliance check failed (the message lists them)."""


@dataclass
class Check:
    """One check: ``name``, ``ok``, ``detail``; ``seed`` (None for set-level checks); ``required`` False for checks
    that are reported only."""

    name: str
    ok: bool
    detail: str
    seed: int | None = None
    required: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def mib_shaped(n: int) -> bool:
    """True for byte counts that are a round number of MiB (to 0.01 MiB, at least 1 MiB) but not a round number of
    decimal kB: the fingerprint of a ``TARGET_MB * 1024 * 1024`` budget (SPEC trap 7)."""
    mib = n / 2**20
    return n >= 2**20 and abs(mib * 100 - round(mib * 100)) * 2**20 / 100 < 1.0 and n % 1000 != 0


def byte_target_problem(value: int | str, name: str = "byte target") -> str | None:
    """Why ``value`` is not an acceptable byte target (None when it is): binary units, a MiB-shaped count, or more
    than the 16,000,000-byte limit."""
    try:
        n = parse_byte_target(value)
    except ValueError as e:
        return f"{name}: {e}"
    if mib_shaped(n):
        return (f"{name}={n:,} is a MiB-style target ({n / 2**20:.2f} MiB = {n / 2**20:.2f} * 1024 * 1024 bytes); "
                f"the limit is {SIZE_LIMIT:,} decimal bytes (SPEC trap 7) — write decimal bytes, e.g. 15,900,000")
    if n > SIZE_LIMIT:
        return f"{name}={n:,} is above the {SIZE_LIMIT:,}-byte (decimal) limit"
    return None


def _metric_lines_without_mode(log: str) -> list[str]:
    return [line for line in log.splitlines() if _METRIC_RE.search(line) and not _MODE_RE.search(line)
            and not line.startswith((" ", "#", '"', "\t"))]


def check_seed(run: SeedRun, key: str, code_bytes: int, *, track: str = "10min_16mb") -> list[Check]:
    """The per-seed checks of the module docstring for score ``key`` with ``code_bytes`` counted."""
    if track not in TRACKS:
        raise ValueError(f"track {track!r}: expected one of {', '.join(TRACKS)}")
    timed = track == "10min_16mb"
    r, s = run.result, run.seed
    out: list[Check] = []
    entry, art = score_entry(r, key)
    total = art["artifact_bytes"] + code_bytes
    on_disk = run.run_dir / art["path"]
    disk = on_disk.stat().st_size if on_disk.is_file() else None
    out.append(Check("bytes_total < 16,000,000", total < SIZE_LIMIT and disk == art["artifact_bytes"],
                     f"artifact {art['artifact_bytes']:,} ({art['path']}, on disk "
                     f"{'missing' if disk is None else f'{disk:,}'}) + code {code_bytes:,} = {total:,} bytes "
                     f"(limit {SIZE_LIMIT:,}, decimal)", s))
    cfg = run.config_json.get("config", {})
    flat = {k.upper(): v for g in cfg.values() if isinstance(g, dict) for k, v in g.items()}
    problems = [p for f in BYTE_TARGET_FIELDS if flat.get(f) for p in [byte_target_problem(flat[f], f)] if p]
    limit = r.size_limit
    if limit != SIZE_LIMIT:
        problems.append(f"result.json size_limit={limit!r} is not {SIZE_LIMIT:,} decimal bytes")
    out.append(Check("byte targets are decimal", not problems, "; ".join(problems) or
                     ", ".join(f"{f}={flat.get(f, 0)}" for f in BYTE_TARGET_FIELDS) + " (0 = off)", s))
    body = metric_stream(run.log)
    train_ms = max([float(r.timings.train_time_ms)] + [float(x) for x in _TRAIN_TIME_RE.findall(body)])
    calib = (r.extras.get("calibration") or {}).get("train_data_last_read_ms")
    reads = [float(x) for x in _LAST_READ_RE.findall(body)] + ([float(calib)] if calib is not None else [])
    last_read = max([train_ms] + reads)
    out.append(Check("train <= 600 s (incl. train-data calibration)", last_read <= 1000 * TRAIN_LIMIT_S,
                     f"training clock {train_ms / 1000:.1f} s, last training-data read at {last_read / 1000:.1f} s",
                     s, required=timed))
    ev = None if math.isnan(r.timings.eval_wallclock_seconds) else r.timings.eval_wallclock_seconds
    logged = [float(x) for x in _EVAL_TIME_RE.findall(body)]
    if ev is None and logged:
        ev = logged[-1]
    if ev is None:
        out.append(Check("eval <= 600 s (whole scoring pass)", False,
                         "no total_eval_time stamp in the log or result.json (run predates it)", s, required=timed))
    else:
        out.append(Check("eval <= 600 s (whole scoring pass)", float(ev) <= EVAL_LIMIT_S,
                         f"{float(ev):.1f} s after the training loop (export, round-trips, every scoring pass)", s,
                         required=timed))
    bad, noted = [], []
    entries = protocol_entries(r)
    for name, e in entries.items():
        rep = e.get("ledger")
        if not isinstance(rep, dict):
            bad.append(f"{name}: no legality report")
            continue
        declared_only = (not rep.get("legal") and rep.get("legal_except_declared") and rep.get("declared")
                         and not rep.get("violations"))
        if declared_only and name != key:  # a record's known deviation in a protocol the record does not claim
            noted.append(f"{name}: declared {[d['kind'] for d in rep.get('declared', [])]}")
        elif not rep.get("legal") or rep.get("violations") or rep.get("n_scored") != rep.get("n_targets"):
            bad.append(f"{name}: legal={rep.get('legal')} violations={rep.get('violation_counts')} "
                       f"scored {rep.get('n_scored')}/{rep.get('n_targets')}")
    detail = "; ".join(bad) or f"{len(entries)} protocols, every target scored once, no violation"
    if noted and not bad:
        detail = (f"{len(entries)} protocols, no violation; the claimed {key} scored every target once; declared "
                  f"deviations of unclaimed protocols: " + "; ".join(noted))
    out.append(Check("legality reports clean (C1-C4)", not bad, detail, s))
    vmax = int(r.val.get("val_max_tokens") or 0)
    out.append(Check("full validation split", vmax == 0,
                     f"VAL_MAX_TOKENS={vmax}: a truncated val stream is not a val_bpb" if vmax else
                     f"{entry['tokens']:,} scored targets, {entry['bytes']:,} bytes", s))
    unlabeled = _metric_lines_without_mode(body)
    out.append(Check("every metric line carries eval_mode:", not unlabeled,
                     f"{len(unlabeled)} line(s) without it, first: {unlabeled[0]!r}" if unlabeled else
                     f"{len(_METRIC_RE.findall(body))} metric lines", s))
    pat = re.compile(rf"^\S+_exact val_loss:{entry['val_loss']:.8f} val_bpb:{entry['val_bpb']:.8f} .*"
                     rf"eval_mode[:=]{re.escape(entry['mode'])}(?!\S)", re.M)
    found = pat.search(body)
    out.append(Check("scored line in the log", found is not None,
                     found.group(0)[:160] if found else
                     f"no `*_exact val_loss:{entry['val_loss']:.8f} val_bpb:{entry['val_bpb']:.8f} ... "
                     f"eval_mode:{entry['mode']}` line", s))
    if run.meta.get("bundled"):
        logged_code = int(r.code_bytes)
        out.append(Check("log counted the record's train_gpt.py", logged_code == code_bytes,
                         f"the run counted {logged_code:,} code bytes, the record's train_gpt.py has {code_bytes:,}",
                         s))
    else:
        out.append(Check("log counted the record's train_gpt.py", True,
                         f"run through the package (logged {int(r.code_bytes):,} bytes of core sources); "
                         f"bytes_total recomputed with the record's train_gpt.py ({code_bytes:,} bytes)", s,
                         required=False))
    return out


def check_set(runs: list[SeedRun], failed: Iterable[dict] = ()) -> list[Check]:
    """Set-level checks (module docstring)."""
    failed = list(failed)
    out = [Check("every seed finished and is kept", not failed and bool(runs),
                 "; ".join(f"seed {f['seed']} failed/missing ({f['run_dir']})" for f in failed)
                 or f"{len(runs)} seeds: {', '.join(str(r.seed) for r in runs)}")]
    seeds = [r.seed for r in runs]
    out.append(Check("distinct seeds", len(set(seeds)) == len(seeds), f"seeds {seeds}"))
    diffs = set()
    if runs:
        ref = runs[0].config_json.get("config", {})
        for r in runs[1:]:
            cur = r.config_json.get("config", {})
            for g in set(ref) | set(cur):
                for k in set(ref.get(g, {})) | set(cur.get(g, {})):
                    if k not in _IGNORED_KEYS and ref.get(g, {}).get(k) != cur.get(g, {}).get(k):
                        diffs.add(f"{k.upper()} (seed {runs[0].seed}: {ref.get(g, {}).get(k)!r}, seed {r.seed}: "
                                  f"{cur.get(g, {}).get(k)!r})")
    out.append(Check("one configuration (only SEED differs)", not diffs, "; ".join(sorted(diffs)) or "identical"))
    out.append(Check("three or more seeds", len(runs) >= 3, f"{len(runs)} seed(s)", required=False))
    return out


def check_script_lint(source: str) -> Check:
    """The static lint of the record's script (readable source or stub): fails on any ``flag`` finding; the
    detail lists every finding as ``severity rule line N``."""
    found = lint_source(source)
    flags = [f for f in found if f.severity == "flag"]
    listed = "; ".join(f"{f.severity} {f.rule} line {f.line}: {f.message}" for f in found)
    return Check("static lint of train_gpt.py (SPEC §4.8 item 6)", not flags,
                 f"{len(flags)} flag(s), {len(found) - len(flags)} for review" + (f" — {listed}" if listed else ""))


@dataclass
class ComplianceReport:
    """All checks of a record; ``ok`` when every required check passed."""

    track: str
    score: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.required and not c.ok]

    def passed(self, name: str) -> bool:
        return all(c.ok for c in self.checks if c.name == name)

    def to_dict(self) -> dict:
        return {"track": self.track, "score": self.score, "ok": self.ok, "checks": [c.to_dict() for c in self.checks]}

    def submission_flags(self, ttt: bool, ngram: bool = False) -> dict:
        """The ``compliance`` object of ``submission.json``: the keys accepted records use (``train_under_600s``,
        ``artifact_under_16mb``, ``eval_under_600s``, ``no_slot``, ``no_pre_quant_ttt``, ``no_etlb``,
        ``no_ngram_cache``, ``score_first_ttt``, ``three_seeds``; e.g. 2026-04-09_SP8192_3LayerRecur_ParResid), from
        what the runs did (``ttt``: the scored metric is a TTT score; ``ngram``: an eval-time n-gram mixer scored),
        then golflib's own checks."""
        return {"train_under_600s": self.passed("train <= 600 s (incl. train-data calibration)"),
                "artifact_under_16mb": self.passed("bytes_total < 16,000,000"),
                "eval_under_600s": self.passed("eval <= 600 s (whole scoring pass)"),
                "no_slot": True,  # golflib has no SLOT (a delta fitted on the scored window's own targets)
                "no_pre_quant_ttt": True,  # golflib's TTT runs on the dequantized artifact model only
                "no_etlb": True,  # golflib has no eval-time logit bias fitted on val
                "no_ngram_cache": not ngram,
                "score_first_ttt": self.passed("legality reports clean (C1-C4)") if ttt else None,
                "decimal_byte_targets": self.passed("byte targets are decimal"),
                "legality_reports_clean": self.passed("legality reports clean (C1-C4)"),
                "eval_mode_labels": self.passed("every metric line carries eval_mode:"),
                "full_validation_split": self.passed("full validation split"),
                "all_seeds_reported": self.passed("every seed finished and is kept"),
                "three_seeds": self.passed("three or more seeds")}


def check_record(runs: list[SeedRun], key: str, code_bytes: int, *, failed: Iterable[dict] = (),
                 track: str = "10min_16mb") -> ComplianceReport:
    """Every check for a record made of ``runs`` scored by ``key`` with ``code_bytes`` of train_gpt.py."""
    checks = check_set(runs, failed)
    for r in runs:
        checks.extend(check_seed(r, key, code_bytes, track=track))
    return ComplianceReport(track, key, checks)


def require_compliant(report: ComplianceReport) -> None:
    """Raise :class:`ComplianceError` naming every failed required check (seed, check, detail)."""
    bad = report.failures()
    if bad:
        lines = [f"{'seed ' + str(c.seed) if c.seed is not None else 'record'}: {c.name}: {c.detail}" for c in bad]
        raise ComplianceError(f"record refused ({len(bad)} failed check(s), track {report.track}):\n  "
                              + "\n  ".join(lines))
