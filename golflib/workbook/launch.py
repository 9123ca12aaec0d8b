"""Launch training as a ``torchrun`` subprocess and stream its output (never ``mp.spawn`` from a kernel).

The same command works on a laptop (``nproc=1``, CPU, gloo) and on 8×H100 (``nproc=8``, NCCL): the training picks its
device and backend itself (:mod:`golflib.runtime`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from golflib.config import Config
from golflib.presets import resolve
from golflib.runlog import CONSOLE_LOG, NOTEBOOK_FILES, refuse_used_run_dir, write_json
from golflib.workbook.runs import load_result


class TrainingFailed(RuntimeError):
    """The training subprocess exited non-zero; its logs stay in the run directory."""


def distributed_args(nproc: int) -> list[str]:
    """torchrun's arguments for ``nproc`` processes per node: ``--standalone`` on one machine, or — inside a
    multi-node job (:func:`golflib.workbook.executor.run_in_job` sets ``GOLF_NNODES`` > 1, ``GOLF_NODE_RANK``,
    ``GOLF_RDZV_ENDPOINT``, ``GOLF_RDZV_ID``) — the c10d rendezvous every node joins. Raises ``ValueError`` for a
    bad ``nproc``."""
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ValueError(f"nproc={nproc!r}: expected an integer >= 1")
    nnodes = int(os.environ.get("GOLF_NNODES") or 1)
    if nnodes > 1:
        return [f"--nnodes={nnodes}", f"--nproc_per_node={nproc}", f"--node_rank={os.environ['GOLF_NODE_RANK']}",
                "--rdzv_backend=c10d", f"--rdzv_endpoint={os.environ['GOLF_RDZV_ENDPOINT']}",
                f"--rdzv_id={os.environ.get('GOLF_RDZV_ID', 'golf')}"]
    return ["--standalone", f"--nproc_per_node={nproc}"]


def torchrun_command(run_dir: str | os.PathLike, preset: str = "cpu-tiny", overrides: Mapping[str, Any] | None = None,
                     nproc: int = 1, python: str | None = None, scale: float = 1.0) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node=N -m golflib.train ...``."""
    cmd = [python or sys.executable, "-m", "torch.distributed.run", *distributed_args(nproc),
           "-m", "golflib.train", "--preset", preset, "--run-dir", str(run_dir)]
    if scale != 1.0:
        cmd += ["--scale", str(scale)]
    for k, v in (overrides or {}).items():
        cmd += ["--set", f"{k}={_fmt(v)}"]
    return cmd


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def script_command(script: str | os.PathLike, run_dir: str | os.PathLike, nproc: int = 1,
                   python: str | None = None) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node=N <script> --run-dir RUN_DIR`` for a
    single-file ``train_gpt.py`` (its config is baked in; environment variables override it)."""
    return [python or sys.executable, "-m", "torch.distributed.run", *distributed_args(nproc),
            str(script), "--run-dir", str(run_dir)]


def config_command(run_dir: str | os.PathLike, config_path: str | os.PathLike, nproc: int = 1,
                   python: str | None = None) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node=N -m golflib.train --config C --run-dir D``:
    training on an already resolved config (no preset, scale or ``--set`` applied again)."""
    return [python or sys.executable, "-m", "torch.distributed.run", *distributed_args(nproc),
            "-m", "golflib.train", "--config", str(config_path), "--run-dir", str(run_dir)]


def launch_training(run_dir: str | os.PathLike, preset: str | Config = "cpu-tiny",
                    overrides: Mapping[str, Any] | None = None, nproc: int = 1,
                    echo: Callable[[str], None] | None = print, env: Mapping[str, str] | None = None,
                    cwd: str | os.PathLike | None = None, scale: float = 1.0, meta: Mapping[str, Any] | None = None,
                    bundle: str = "") -> dict:
    """Resolve the config once, here — ``preset`` is a preset name (resolved with ``overrides``, ``scale`` and the
    environment ``env``, default ``os.environ``) or an already resolved :class:`Config` (``overrides`` applied on
    top) — write it to ``<run_dir>/config.json`` and train on exactly that file (``--config``), so what a
    notebook printed is what trains. ``meta`` (preset name, scale, overrides) is recorded with it; the training
    adds its own (git commit, versions, device). Runs the subprocess, echoes each output line as it arrives (also
    saved to ``console.log``) and returns the run's ``result.json``. Raises :class:`TrainingFailed` with the last
    lines of output when the process fails, :class:`~golflib.errors.RunDirError` when the run directory already holds
    files (other than the notebook running this). ``bundle`` = ``"compressed"`` or ``"readable"`` trains through the
    bundled ``train_gpt.py`` of that form instead of the package (:func:`launch_script`: what you run is what you
    submit); ``""`` trains through ``golflib.train``."""
    run_dir = Path(run_dir)
    if isinstance(preset, Config):
        cfg, name = preset.replace(dict(overrides or {}), source="override"), None
    else:
        cfg, name = resolve(preset, overrides or {}, environ=os.environ if env is None else env, scale=scale), preset
    refuse_used_run_dir(run_dir, NOTEBOOK_FILES)
    info = {"preset": name, "scale": scale, "overrides": {k: _fmt(v) for k, v in (overrides or {}).items()},
            **dict(meta or {})}
    if bundle:
        return launch_script(run_dir, cfg, nproc=nproc, form=bundle, echo=echo, env=env, meta=info)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.json"
    write_json(path, {"config": cfg.to_dict(), "meta": info})
    return run_training_command(config_command(run_dir, path, nproc), run_dir, echo=echo, env=env, cwd=cwd)


def launch_script(run_dir: str | os.PathLike, cfg: Config, *, nproc: int = 1, form: str = "compressed",
                  codec: str = "brotli", echo: Callable[[str], None] | None = print,
                  env: Mapping[str, str] | None = None, meta: Mapping[str, Any] | None = None) -> dict:
    """Train through the submission itself: bundle ``cfg`` into ``<run_dir>/train_gpt.py`` (the counted ``form``;
    ``train_gpt_readable.py`` beside it when compressed, :mod:`golflib.record.script`), record its stats and
    ``meta`` in ``<run_dir>/script.json``, and run that file under ``torchrun`` with ``--run-dir <run_dir>``, so the
    run's ``train.log``, ``bytes_total`` and code bytes come from the very file a records folder ships
    (:func:`golflib.record.seeds.collect_seeds` reads the script back). The environment is ``env`` (default
    ``os.environ``) without golflib config variables (the config is baked in), plus the absolute data paths when
    they differ from the baked ``./data/...``. Returns ``result.json``; raises :class:`TrainingFailed`,
    :class:`~golflib.errors.RunDirError` for a used run directory, ``ValueError`` for a bad form/codec."""
    from golflib.record.script import SCRIPT_META, SCRIPT_NAME, make_script, script_data_env, write_script
    from golflib.record.seeds import clean_env

    run_dir = Path(run_dir)
    refuse_used_run_dir(run_dir, NOTEBOOK_FILES)
    script = make_script(cfg, form=form, codec=codec)
    write_script(script, run_dir)
    data_env = script_data_env(cfg, script)
    cmd = script_command(run_dir.resolve() / SCRIPT_NAME, run_dir.resolve(), nproc)
    write_json(run_dir / SCRIPT_META, {"script": SCRIPT_NAME, "script_stats": script.stats, "nproc": nproc,
                                       "data_env": data_env, "command": cmd[1:], **dict(meta or {})})
    full_env = {**clean_env(os.environ if env is None else env), **data_env}
    return run_training_command(cmd, run_dir, echo=echo, env=full_env)


def run_training_command(cmd: list[str], run_dir: str | os.PathLike, echo: Callable[[str], None] | None = print,
                         env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None) -> dict:
    """Run a training command (:func:`torchrun_command`, :func:`script_command`) as :func:`launch_training` does
    and return the run's ``result.json``; raises :class:`TrainingFailed`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ if env is None else env)
    full_env.update({"PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"})
    tail: list[str] = []
    with open(run_dir / CONSOLE_LOG, "a", encoding="utf-8") as console:
        console.write("$ " + " ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                env=full_env, cwd=cwd)
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            console.write(line + "\n")
            console.flush()
            tail = (tail + [line])[-40:]
            if echo is not None:
                echo(line)
        rc = proc.wait()
    if rc != 0:
        raise TrainingFailed(f"training exited with code {rc}; logs kept in {run_dir} (train.log, console.log). "
                             "Last lines:\n" + "\n".join(tail))
    return load_result(run_dir)
