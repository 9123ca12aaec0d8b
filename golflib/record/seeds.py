"""Multi-seed runs: every seed of a record, through the submission script itself (SPEC §4.1 rule 5, §4.8 item 7).

:func:`run_seeds` resolves the config once (preset → scale → environment → overrides), writes the bundled
``train_gpt.py`` (both forms, :mod:`golflib.record.script`) into a fresh seeds directory, and runs it once per seed
under ``torchrun`` (a subprocess per seed, :mod:`golflib.workbook.launch`) with ``SEED=<seed>`` in the
environment — so each seed's log, ``result.json`` and ``bytes_total`` come from the very file a record ships.
Every seed is kept: a failed seed is recorded as failed (its logs stay), never dropped or replaced, and the
per-seed table lists all of them. Layout::

    <seeds_dir>/seeds.json           plan (preset, seeds, config, command, env) + per-seed status and table
    <seeds_dir>/seeds_table.md       the per-seed table (Markdown)
    <seeds_dir>/train_gpt.py         the counted form (+ train_gpt_readable.py when compressed)
    <seeds_dir>/seed_<S>/            one run directory per seed (train.log, result.json, artifacts, ...)

:func:`collect_seeds` reads such a directory back — or a single run directory, or a folder of run directories.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from golflib.errors import RunDirError
from golflib.config import env_names
from golflib.presets import resolve
from golflib.record.results import SeedRun, load_seed_run, markdown_table, resolve_score_key, seed_row, summarize
from golflib.record.script import SCRIPT_META, SCRIPT_NAME, make_script, script_data_env, write_script
from golflib.runlog import create_run_dir, write_json

SEEDS_FILE = "seeds.json"
TABLE_FILE = "seeds_table.md"


def parse_seeds(seeds: str | Iterable[int]) -> list[int]:
    """``"1337,42,2025"`` or a list of ints → distinct non-negative ints in the given order; raises ``ValueError``
    for duplicates, non-integers and an empty list."""
    items = [s for s in seeds.replace(" ", "").split(",") if s] if isinstance(seeds, str) else list(seeds)
    try:
        out = [int(s) for s in items]
    except (TypeError, ValueError):
        raise ValueError(f"seeds {seeds!r}: expected comma-separated integers such as 1337,42,2025") from None
    if not out or any(s < 0 for s in out) or any(isinstance(s, float) and s != int(s) for s in items):
        raise ValueError(f"seeds {seeds!r}: expected at least one non-negative integer")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds {seeds!r}: duplicate seeds (each seed runs once and every run is kept)")
    return out


@dataclass
class SeedSet:
    """The seeds of one record: finished ``runs`` (in plan order), ``failed`` seeds (``{"seed", "run_dir",
    "error"}``), the ``plan`` from ``seeds.json`` (None for collected run directories) and the ``script`` that
    produced the runs (None when they ran through the package)."""

    root: Path | None
    runs: list[SeedRun]
    failed: list[dict] = field(default_factory=list)
    plan: dict | None = None
    script: Path | None = None

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    def table(self, score: str = "auto", code_bytes: int | None = None) -> tuple[str, list[dict], dict]:
        """``(score_key, rows, summary)`` of the per-seed table; ``code_bytes`` defaults to each run's own
        ``result.json`` count."""
        if not self.runs:
            raise ValueError(f"{self.root}: no finished seed runs")
        key = resolve_score_key(self.runs[0].result, score)
        rows = [seed_row(r, key, r.result.code_bytes if code_bytes is None else code_bytes)
                for r in self.runs]
        return key, rows, summarize(rows)


def clean_env(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without golflib config variables (the resolved config is baked into the script)."""
    names = set(env_names())
    return {k: v for k, v in base.items() if k not in names}


def run_seeds(preset: str, seeds: str | Iterable[int], *, nproc: int = 1, scale: float = 1.0,
              overrides: Mapping[str, object] | None = None, form: str = "compressed", codec: str = "brotli",
              out_dir: str | os.PathLike | None = None, runs_root: str | os.PathLike = "runs", score: str = "auto",
              echo: Callable[[str], None] | None = print, environ: Mapping[str, str] | None = None) -> SeedSet:
    """Run every seed (module docstring) and return the :class:`SeedSet`; ``seeds.json`` and the table are written
    even when seeds fail. ``environ`` (default ``os.environ``) feeds the config resolution; the subprocesses get
    it without config variables, plus ``SEED`` and, when the baked data paths were made portable, the real ones.
    Raises ``ValueError``/``ConfigError`` for bad arguments before anything runs."""
    from golflib.workbook.launch import TrainingFailed, run_training_command, script_command

    seeds = parse_seeds(seeds)
    environ = dict(os.environ if environ is None else environ)
    overrides = dict(overrides or {})
    if any(str(k).upper() == "SEED" for k in overrides):
        raise ValueError("SEED is set per seed by --seeds; remove it from the overrides")
    cfg = resolve(preset, overrides, environ=environ, scale=scale)
    script = make_script(cfg, form=form, codec=codec)
    root = Path(out_dir) if out_dir else create_run_dir(runs_root, slug=f"seeds-{preset}")
    root.mkdir(parents=True, exist_ok=True)
    if (root / SEEDS_FILE).exists():
        raise RunDirError(f"{root / SEEDS_FILE} exists: a seeds directory is never overwritten")
    write_script(script, root)
    data_env = script_data_env(cfg, script)
    plan = {"preset": preset, "scale": scale, "overrides": {k: str(v) for k, v in overrides.items()},
            "seeds": seeds, "nproc": nproc, "script": SCRIPT_NAME, "script_stats": script.stats,
            "score": score, "data_env": data_env, "config": cfg.to_dict(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": {}}
    write_json(root / SEEDS_FILE, plan)
    base_env = clean_env(environ)
    for seed in seeds:
        run_dir = root / f"seed_{seed}"
        env = {**base_env, **data_env, "SEED": str(seed)}
        cmd = script_command(SCRIPT_NAME, run_dir.resolve(), nproc)
        plan["status"][str(seed)] = {"run_dir": run_dir.name, "command": cmd[1:], "env": {**data_env,
                                                                                           "SEED": str(seed)}}
        if echo:
            echo(f"[seeds] seed {seed}: {' '.join(cmd)}")
        t0 = time.perf_counter()
        try:
            run_training_command(cmd, run_dir, echo=echo, env=env, cwd=root)
            plan["status"][str(seed)].update(state="done", seconds=time.perf_counter() - t0)
        except TrainingFailed as e:
            plan["status"][str(seed)].update(state="failed", error=str(e)[-2000:],
                                             seconds=time.perf_counter() - t0)
            if echo:
                echo(f"[seeds] seed {seed} FAILED (kept as failed; logs in {run_dir})")
        write_json(root / SEEDS_FILE, plan)
    out = collect_seeds(root)
    write_table(out, score)
    return out


def write_table(seedset: SeedSet, score: str = "auto") -> str:
    """Write ``seeds_table.md`` and the table into ``seeds.json`` of a seeds directory; returns the Markdown."""
    code = seedset.script.stat().st_size if seedset.script else None
    lines = []
    table = {}
    if seedset.runs:
        key, rows, summary = seedset.table(score, code)
        md = markdown_table(rows, summary)
        table = {"score": key, "rows": rows, "summary": summary}
        lines.append(f"score: {key} (eval_mode {rows[0]['eval_mode']})\n\n{md}")
    for f in seedset.failed:
        lines.append(f"seed {f['seed']}: FAILED — {f['error'].splitlines()[0] if f['error'] else ''} "
                     f"(logs in {f['run_dir']})\n")
    text = "\n".join(lines)
    if seedset.root is not None and seedset.plan is not None and "seeds" in seedset.plan:  # a seeds directory
        (seedset.root / TABLE_FILE).write_text(text, encoding="utf-8")
        seedset.plan["table"] = table
        seedset.plan["failed"] = seedset.failed
        write_json(seedset.root / SEEDS_FILE, seedset.plan)
    return text


def collect_seeds(path: str | os.PathLike | Iterable[str | os.PathLike]) -> SeedSet:
    """Read seeds back: a seeds directory (``seeds.json``: every planned seed, failures included), a single run
    directory (``result.json``), a folder of run directories, or a list of run directories. Raises
    ``FileNotFoundError`` when nothing is found and ``ValueError`` for two runs with the same seed."""
    import json

    if not isinstance(path, (str, os.PathLike)):
        runs = [load_seed_run(p) for p in path]
        return _checked(SeedSet(None, runs))
    root = Path(path)
    if (root / SEEDS_FILE).is_file():
        plan = json.loads((root / SEEDS_FILE).read_text(encoding="utf-8"))
        runs, failed = [], []
        for seed in plan["seeds"]:
            run_dir = root / plan.get("status", {}).get(str(seed), {}).get("run_dir", f"seed_{seed}")
            try:
                runs.append(load_seed_run(run_dir))
            except (FileNotFoundError, ValueError) as e:
                err = plan.get("status", {}).get(str(seed), {}).get("error") or str(e)
                failed.append({"seed": seed, "run_dir": str(run_dir), "error": err})
        script = root / plan.get("script", SCRIPT_NAME)
        return _checked(SeedSet(root, runs, failed, plan, script if script.is_file() else None))
    if (root / "result.json").is_file() or (root / "config.json").is_file():
        script, plan = None, None
        if (root / SCRIPT_META).is_file() and (root / SCRIPT_NAME).is_file():  # trained by its own script
            plan = json.loads((root / SCRIPT_META).read_text(encoding="utf-8"))
            script = root / SCRIPT_NAME
        return _checked(SeedSet(root, [load_seed_run(root)], plan=plan, script=script))
    subs = sorted(p for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file()) if root.is_dir() else []
    if not subs:
        raise FileNotFoundError(f"{root}: no seeds.json, result.json or run directories")
    return _checked(SeedSet(root, [load_seed_run(p) for p in subs]))


def _checked(s: SeedSet) -> SeedSet:
    seen: dict[int, Path] = {}
    for r in s.runs:
        if r.seed in seen:
            raise ValueError(f"seed {r.seed} appears twice ({seen[r.seed]} and {r.run_dir}); a record lists each "
                             f"seed once")
        seen[r.seed] = r.run_dir
    return s


def run_or_collect(seeds_dir: str | os.PathLike | None = None, **run_kwargs) -> SeedSet:
    """The notebook's entry point: :func:`collect_seeds` of ``seeds_dir`` when given, else :func:`run_seeds`."""
    if seeds_dir:
        return collect_seeds(seeds_dir)
    return run_seeds(**run_kwargs)
