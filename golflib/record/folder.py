"""``golf record``: write ``records/track_10min_16mb/YYYY-MM-DD_<NAME>/`` from a seeds directory or a run (SPEC §5).

Contents: ``README.md`` · ``submission.json`` · ``train_gpt.py`` (the counted form; ``train_gpt_readable.py`` next
to it when the compressed form is counted) · ``requirements.txt`` · ``train_seed<S>.log`` for every seed ·
``figures/*.png`` + ``*.svg``. The script is the one the seeds ran (a seeds directory of
:func:`golflib.record.seeds.run_seeds`) or, for runs trained through the package, generated from their configuration
(bytes_total is then recomputed with that file). Nothing is written unless every required compliance check passes
(:mod:`golflib.record.compliance`); an existing folder is never overwritten.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from golflib.errors import RunDirError
from golflib.config import Config
from golflib.presets import resolve
from golflib.record.compliance import ComplianceReport, check_record, check_script_lint, require_compliant
from golflib.record.minify import extract
from golflib.record.results import markdown_table, score_entry, tokens_per_byte
from golflib.record.script import READABLE_NAME, SCRIPT_NAME, make_script, script_form
from golflib.record.seeds import SeedSet, collect_seeds
from golflib.record.stats import MARGIN_NATS, Significance, significance
from golflib.record.submission import config_changes, hardware_string, readme, requirements, submission_json
from golflib.runlog import write_json

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


@dataclass
class Record:
    """A written record folder: ``path``, ``submission`` (the JSON object), ``compliance``, ``significance``."""

    path: Path
    submission: dict
    compliance: ComplianceReport
    significance: Significance | None

    def tree(self) -> str:
        """The folder's files with their sizes, one per line."""
        lines = [f"{self.path.name}/"]
        for p in sorted(self.path.rglob("*")):
            if p.is_file():
                lines.append(f"  {p.relative_to(self.path)}  ({p.stat().st_size:,} bytes)")
        return "\n".join(lines)


def _script_for(seedset: SeedSet, form: str, codec: str) -> tuple[str, str, dict]:
    """``(counted text, readable text, stats)``: the seeds' own script when they ran through one, else a new one."""
    if seedset.script is not None:
        text = seedset.script.read_text(encoding="utf-8")
        stats = dict((seedset.plan or {}).get("script_stats") or {})
        readable_path = seedset.script.with_name(READABLE_NAME)
        readable = readable_path.read_text(encoding="utf-8") if readable_path.is_file() else text
        if script_form(text) != stats.get("form"):
            raise ValueError(f"{seedset.script}: form {script_form(text)} does not match seeds.json "
                             f"({stats.get('form')}); the seeds directory was edited")
        stats["counted_bytes"] = len(text.encode("utf-8"))
        return text, readable, stats
    run = seedset.runs[0]
    script = make_script(run.config, form=form, codec=codec)
    return script.counted, script.readable, script.stats


def record_significance(rows: Sequence[dict], base_nats: Sequence[float] | None = None,
                        base_threshold_nats: float | None = None, tokens_per_byte: float | None = None,
                        margin: float = MARGIN_NATS) -> tuple[Significance | None, str]:
    """``(significance, note)`` of the seeds' val_loss against the base record (Welch with >= 2 base values, else
    one-sample against the threshold); ``(None, reason)`` without a base or with fewer than 2 seeds."""
    if not base_nats and base_threshold_nats is None:
        return None, "No base record was given: no significance test."
    if len(rows) < 2:
        return None, f"Significance needs at least 2 seeds; this record has {len(rows)}."
    return significance([r["val_loss"] for r in rows], base_nats=base_nats or None,
                        threshold_nats=base_threshold_nats, margin=margin, tokens_per_byte=tokens_per_byte), ""


def record_preview(seedset: SeedSet, score: str = "auto", form: str = "compressed", codec: str = "brotli") -> dict:
    """What :func:`write_record` would claim, without writing: ``score`` key, per-seed ``rows``, ``summary``,
    ``code_bytes`` and ``script_stats`` of the train_gpt.py it would ship, ``tokens_per_byte`` of the scored set,
    and ``table_md``."""
    if not seedset.runs:
        raise ValueError(f"{seedset.root}: no finished seed runs")
    counted, _, stats = _script_for(seedset, form, codec)
    code = len(counted.encode("utf-8"))
    key, rows, summary = seedset.table(score, code)
    return {"score": key, "rows": rows, "summary": summary, "code_bytes": code, "script_stats": stats,
            "tokens_per_byte": tokens_per_byte(score_entry(seedset.runs[0].result, key)[0]),
            "table_md": markdown_table(rows, summary)}


def _base_config(base_preset: str | None, run_meta: dict) -> tuple[Config, str]:
    if base_preset:
        return resolve(base_preset, environ={}, scale=float(run_meta.get("scale") or 1.0)), f"preset {base_preset}"
    return Config(), "the naive baseline (golflib defaults, SPEC §2.1)"


def portable_path(text: str) -> str:
    """``text`` without this machine's absolute paths (a record folder is read on other machines): a path under the
    working directory becomes relative, one inside a ``data/`` tree becomes ``./data/...`` (the challenge's
    layout), any other absolute path keeps only its last two parts behind ``…/``; other text is unchanged."""
    if not text.startswith("/"):
        return text
    p = Path(text)
    try:
        return "./" + p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        pass
    parts = p.parts
    if "data" in parts[1:-1]:
        return "./" + "/".join(parts[parts.index("data", 1):])
    return "…/" + "/".join(parts[-2:])


def write_record(source: str | os.PathLike | SeedSet, name: str, *, records_root: str | os.PathLike = "records",
                 track: str = "10min_16mb", score: str = "auto", form: str = "compressed", codec: str = "brotli",
                 base_pr: int | None = None, base_nats: Sequence[float] | None = None,
                 base_threshold_nats: float | None = None, base_preset: str | None = None,
                 base_label: str | None = None, author: str = "", github_id: str = "", blurb: str = "",
                 date: str | None = None, nproc: int = 8, margin: float = MARGIN_NATS) -> Record:
    """Write the record folder (module docstring) and return it.

    ``source``: a seeds directory, a run directory, a folder of runs, or a :class:`SeedSet`. ``score``: the
    score key (:mod:`golflib.record.results`). ``form``/``codec``: the counted script form when the script is
    generated here. ``base_nats``: the base record's per-seed val_loss (nats; Welch test) or
    ``base_threshold_nats`` (one-sample test); ``base_preset``: the configuration the "changes" table compares
    against. Raises :class:`golflib.record.compliance.ComplianceError` (nothing written) when a required check
    fails, :class:`~golflib.errors.RunDirError` when the folder exists, ``ValueError`` for a bad name."""
    if not _NAME_RE.match(name):
        raise ValueError(f"name {name!r}: expected letters, digits, '_', '.', '-' (at most 80 characters)")
    seedset = source if isinstance(source, SeedSet) else collect_seeds(source)
    if not seedset.runs:
        raise ValueError(f"{seedset.root}: no finished seed runs")
    counted, readable, stats = _script_for(seedset, form, codec)
    code_bytes = len(counted.encode("utf-8"))
    key, rows, summary = seedset.table(score, code_bytes)
    report = check_record(seedset.runs, key, code_bytes, failed=seedset.failed, track=track)
    report.checks.append(check_script_lint(readable))
    require_compliant(report)

    date = date or time.strftime("%Y-%m-%d")
    folder = Path(records_root) / f"track_{track}" / f"{date}_{name}"
    if folder.exists():
        raise RunDirError(f"{folder} exists: a record folder is never overwritten")
    sig, note = record_significance(rows, base_nats, base_threshold_nats,
                                    tokens_per_byte(score_entry(seedset.runs[0].result, key)[0]), margin)
    folder.mkdir(parents=True)
    files = [SCRIPT_NAME]
    (folder / SCRIPT_NAME).write_text(counted, encoding="utf-8")
    if stats.get("form") == "compressed":
        (folder / READABLE_NAME).write_text(readable, encoding="utf-8")
        files.append(READABLE_NAME)
    req = requirements(extract(counted) if stats.get("form") == "compressed" else readable,  # what runs
                       seedset.runs[0].meta.get("versions", {}).get("torch"))
    (folder / "requirements.txt").write_text(req, encoding="utf-8")
    files.append("requirements.txt")
    for run in seedset.runs:
        shutil.copyfile(run.run_dir / "train.log", folder / f"train_seed{run.seed}.log")
        files.append(f"train_seed{run.seed}.log")

    from golflib.record.plots import plot_seed_curves, plot_seed_scores
    from golflib.workbook.plots import plot_size_budget

    fig_dir = folder / "figures"
    figs = [plot_seed_curves(seedset.runs, rows, save_to=[fig_dir]),
            plot_seed_scores(rows, summary, save_to=[fig_dir]),
            plot_size_budget(code_bytes, summary["artifact_bytes_max"], label=name, save_to=[fig_dir])]
    import matplotlib.pyplot as plt

    figures = []
    for f in figs:
        figures += [str(Path(p).relative_to(folder)) for p in f.saved_paths]
        plt.close(f)
    files += figures

    meta = seedset.runs[0].meta
    hardware = hardware_string(meta)
    torch_version = meta.get("versions", {}).get("torch", "unknown")
    base_cfg, default_label = _base_config(base_preset, meta)
    label = base_label or (f"PR #{base_pr}" if base_pr and not base_preset else default_label)
    ttt = key.startswith("ttt/") or (key.startswith("ngram/") and key.split("/")[1] in ("chunked", "lora",
                                                                                        "phased"))
    ngram = key.startswith("ngram/")
    if not (author and github_id):
        warnings.warn(f"record {name}: author or github_id is empty in submission.json — fill them in before "
                      "opening the PR (golf record --author NAME --github-id ID)", UserWarning, stacklevel=2)
        print(f"golf record: WARNING: {folder / 'submission.json'} has no author / github_id", file=sys.stderr)
    sub = submission_json(name=name, author=author, github_id=github_id, blurb=blurb, date=date, track=track,
                          rows=rows, summary=summary, code_bytes=code_bytes, hardware=hardware,
                          pytorch_version=torch_version, compliance=report.submission_flags(ttt, ngram),
                          base_pr=base_pr,
                          score_key=key, script_stats=stats, significance=sig,
                          cuda_version=(meta.get("device") or {}).get("cuda"))
    write_json(folder / "submission.json", sub)
    files.insert(0, "submission.json")
    plan = seedset.plan or {}
    data_env = plan.get("data_env") or {}
    n = int(plan.get("nproc") or nproc)
    commands = [f"SEED={r.seed} torchrun --standalone --nproc_per_node={n} {SCRIPT_NAME}" for r in seedset.runs]
    data_note = ("Data: the script reads the shards and tokenizer at the baked paths `DATA_PATH` / "
                 "`TOKENIZER_PATH` (the challenge's `./data/datasets/<name>`, `./data/tokenizers/<file>` layout; "
                 "`golf data fetch` for FineWeb, `golf data prepare` for the embedded corpus); override them with "
                 "the environment variables of the same name.")
    if data_env:
        data_note += " The seeds here ran with " + ", ".join(f"`{k}={portable_path(str(v))}`"
                                                             for k, v in data_env.items()) + "."
    if seedset.script is None:
        argv = " ".join(portable_path(a) for a in meta.get("argv") or [])
        data_note += (f" These seeds were trained through the golflib package (`{argv}`, git "
                      f"{meta.get('git_commit') or 'unknown'}); `train_gpt.py` was generated from the same "
                      f"configuration and training core, and bytes_total counts it.")
    from golflib.record.bundle import _provenance

    text = readme(name=name, blurb=blurb, track=track, rows=rows, summary=summary,
                  table_md=markdown_table(rows, summary), score_key=key, hardware=hardware,
                  pytorch_version=torch_version, script_stats=stats, code_bytes=code_bytes, significance=sig,
                  significance_note=note, base_pr=base_pr, base_label=label,
                  changes=config_changes(seedset.runs[0].config, base_cfg), commands=commands, data_note=data_note,
                  requirements_txt=req, compliance_rows=[c.to_dict() for c in report.checks], figures=figures,
                  files=["README.md"] + files, provenance=f"Generated by golflib.record ({_provenance()}).")
    (folder / "README.md").write_text(text, encoding="utf-8")
    return Record(folder, sub, report, sig)
