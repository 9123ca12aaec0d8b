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

import json
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
              echo: Callable[[str], None] | None = print, environ: Mapping[str, str] | None = None,
              executor=None, resume: bool = False, retry_failed: bool = False) -> SeedSet:
    """Run every seed (module docstring) and return the :class:`SeedSet`; ``seeds.json`` and the table are written
    even when seeds fail. ``environ`` (default ``os.environ``) feeds the config resolution; the subprocesses get
    it without config variables, plus ``SEED`` and, when the baked data paths were made portable, the real ones.
    ``executor`` (:class:`golflib.workbook.executor.ExecutorSettings` or its dict; default local, one seed after
    another) runs the seeds as parallel processes or a Slurm job array; every seed's state, job id and log go to
    ``sweep.json`` (``golf sweep status``). A Slurm dry run prints the submission and returns an empty set.
    ``resume`` continues an existing ``out_dir`` made with the same config and seeds: finished seeds are kept,
    interrupted ones run again, failed ones only with ``retry_failed`` — an earlier attempt's folder is kept as
    ``seed_<S>.failed-<n>``.
    Raises ``ValueError``/``ConfigError`` for bad arguments before anything runs."""
    from golflib.workbook.executor import ExecutorSettings, Task, execute
    from golflib.workbook.launch import script_command
    from golflib.workbook.sweepstate import SweepState, keep_aside

    seeds = parse_seeds(seeds)
    environ = dict(os.environ if environ is None else environ)
    overrides = dict(overrides or {})
    if any(str(k).upper() == "SEED" for k in overrides):
        raise ValueError("SEED is set per seed by --seeds; remove it from the overrides")
    settings = ExecutorSettings.from_value(executor)
    nproc = settings.nproc(nproc)
    cfg = resolve(preset, overrides, environ=environ, scale=scale)
    dry = settings.dry_run  # print the Slurm submission; create and write nothing
    if dry:
        root = Path(out_dir) if out_dir else Path(runs_root) / f"<run id>_seeds-{preset}"
    else:
        root = Path(out_dir) if out_dir else create_run_dir(runs_root, slug=f"seeds-{preset}")
    if (root / SEEDS_FILE).exists():
        if not resume:
            raise RunDirError(f"{root / SEEDS_FILE} exists: a seeds directory is never overwritten (resume it: "
                              "golf seeds ... --out DIR --resume)")
        plan = json.loads((root / SEEDS_FILE).read_text(encoding="utf-8"))
        same_config = json.dumps(plan.get("config"), sort_keys=True) == json.dumps(cfg.to_dict(), sort_keys=True)
        if not same_config or plan.get("seeds") != seeds:
            raise RunDirError(f"{root}: made with another config or seed list; a resumed seeds directory runs the "
                              "same train_gpt.py for the same seeds")
        data_env = dict(plan.get("data_env") or {})
        plan["executor"] = settings.to_dict()
    else:
        script = make_script(cfg, form=form, codec=codec)
        if not dry:
            root.mkdir(parents=True, exist_ok=True)
            write_script(script, root)
        data_env = script_data_env(cfg, script)
        plan = {"preset": preset, "scale": scale, "overrides": {k: str(v) for k, v in overrides.items()},
                "seeds": seeds, "nproc": nproc, "script": SCRIPT_NAME, "script_stats": script.stats,
                "score": score, "data_env": data_env, "config": cfg.to_dict(), "executor": settings.to_dict(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": {}}
    if not dry:
        write_json(root / SEEDS_FILE, plan)
    base_env = clean_env(environ)
    state = SweepState(root, "seeds", executor=settings.to_dict())
    tasks = []
    for seed in seeds:
        run_dir = root / f"seed_{seed}"
        state.plan(str(seed), f"seed {seed}", str(run_dir))
        if (run_dir / "result.json").is_file():  # the run directory is the truth
            state.points[str(seed)]["state"] = "done"
        elif state.state(str(seed)) == "done":
            state.points[str(seed)]["state"] = "pending"
        if str(seed) not in state.todo([str(seed)], retry_failed=retry_failed):
            continue
        keep_aside(run_dir)  # a failed or interrupted attempt stays, with its logs; the retry starts fresh
        env = {**base_env, **data_env, "SEED": str(seed)}
        cmd = script_command(SCRIPT_NAME, run_dir.resolve(), nproc)
        plan["status"][str(seed)] = {"run_dir": run_dir.name, "command": cmd[1:], "env": {**data_env,
                                                                                           "SEED": str(seed)}}
        tasks.append(Task(str(seed), seed_job, (SCRIPT_NAME, str(run_dir.resolve()), nproc, env, str(root)),
                          {"stream": settings.kind == "local" and echo is not None}, label=f"seed {seed}",
                          run_dir=str(run_dir), command=cmd))
    if not dry:
        state.save()

    def submitted(t: Task, job_id: str, log: str) -> None:
        state.submitted(t.key, job_id, log)
        plan["status"][t.key].update(state="submitted", job_id=job_id, log=log)
        if echo:
            echo(f"[seeds] seed {t.key}: {' '.join(t.command)}")

    def finished(t: Task, o) -> None:
        score_ = o.result.get("val_bpb") if o.state == "done" else None
        state.finished(t.key, o.state, job_id=o.job_id, log=o.log, score=score_, error=o.error, seconds=o.seconds)
        plan["status"][t.key].update(state=o.state, seconds=o.seconds, job_id=o.job_id, log=o.log,
                                     **({"error": o.error} if o.state == "failed" else {}))
        write_json(root / SEEDS_FILE, plan)
        if echo and o.state == "failed":
            echo(f"[seeds] seed {t.key} FAILED (kept as failed; logs in {t.run_dir}, {o.log})")

    execute(tasks, settings, root / "jobs", job_name=f"seeds-{preset}", on_submit=submitted, on_outcome=finished,
            echo=echo)
    if dry:  # nothing ran
        return SeedSet(root, [], [], plan, root / SCRIPT_NAME)
    out = collect_seeds(root)
    write_table(out, score)
    return out


def seed_job(script: str, run_dir: str, nproc: int, env: Mapping[str, str], cwd: str,
             stream: bool = False) -> dict:
    """One seed, where an executor runs it: the bundled ``script`` under torchrun (its distributed arguments taken
    on the node, so a multi-node job joins its rendezvous) into ``run_dir``; returns ``{"run_dir", "val_bpb"}`` (the
    run's headline score). Raises :class:`golflib.workbook.launch.TrainingFailed` with the last lines of output."""
    from golflib.workbook.launch import run_training_command, script_command
    from golflib.workbook.runindex import headline

    result = run_training_command(script_command(script, run_dir, nproc), run_dir, echo=print if stream else None,
                                  env=env, cwd=cwd)
    key = headline(result.scores)
    return {"run_dir": run_dir, "val_bpb": result.scores[key].val_bpb if key else None}


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
