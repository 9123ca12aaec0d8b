"""Execute notebooks headlessly with papermill into a run directory (``golf run``).

One run, one folder: the executed notebook is saved as ``runs/<run_id>/<notebook>.ipynb`` and the notebook receives
``run_dir`` as a parameter so the training it launches writes into the same folder. Papermill traps handled here:
``kernel_name="python3"`` always, an execution timeout, ``MPLBACKEND=Agg`` for the training subprocess
(:mod:`golflib.workbook.launch`), cwd = project root,
and typed parameters (``-p`` values parsed as Python literals, then checked by :func:`check_params`).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any, Mapping

from golflib.errors import GolfError, RunDirError
from golflib.runlog import create_run_dir, write_json


class ParamError(GolfError):
    """A notebook parameter has the wrong type or value."""


def parse_param_value(text: str) -> Any:
    """``"8"`` → 8, ``"0.5"`` → 0.5, ``"True"`` → True, ``"{'A': 1}"`` → dict; anything else stays a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_params(values: Mapping[str, Any], spec: Mapping[str, type | tuple[type, ...]]) -> None:
    """Raise :class:`ParamError` naming the parameter when ``values[name]`` is not of the type(s) in ``spec``.
    (An int is accepted where a float is expected; a bool is never accepted as an int.)"""
    for name, typ in spec.items():
        if name not in values:
            raise ParamError(f"notebook parameter {name!r} is missing")
        v = values[name]
        types = typ if isinstance(typ, tuple) else (typ,)
        if float in types and isinstance(v, int) and not isinstance(v, bool):
            continue
        if isinstance(v, bool) and bool not in types:
            raise ParamError(f"notebook parameter {name}={v!r}: expected {'/'.join(t.__name__ for t in types)}")
        if not isinstance(v, types):
            raise ParamError(f"notebook parameter {name}={v!r}: expected {'/'.join(t.__name__ for t in types)}, "
                             f"got {type(v).__name__}")


def check_against_defaults(notebook: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Raise :class:`ParamError` when a given parameter's type differs from its default's in the notebook's
    parameters cell (an int is accepted for a float; a parameter whose default is None takes any value), so a
    wrong-typed ``-p`` fails before papermill starts and before a run directory exists."""
    for name, value in params.items():
        default = defaults.get(name)
        if default is None:
            continue
        try:
            check_params({name: value}, {name: type(default)})
        except ParamError as e:
            raise ParamError(f"{notebook}: {e} (the parameters cell's default is {default!r})") from None


def notebook_parameters(path: str | os.PathLike) -> dict[str, Any]:
    """Default values of the cell tagged ``parameters`` (evaluated as simple assignments)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            out: dict[str, Any] = {}
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    try:
                        out[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        pass
            return out
    raise ParamError(f"{path}: no cell tagged 'parameters'")


def checked_params(notebook: str | os.PathLike, params: Mapping[str, Any] | None) -> tuple[Path, dict, dict]:
    """``(notebook path, params copy, the notebook's defaults)`` once the parameters are checked: raises
    ``FileNotFoundError`` for a missing notebook and :class:`ParamError` for an unknown name or a value whose type
    differs from the default's (:func:`check_against_defaults`)."""
    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook not found: {notebook}")
    params = dict(params or {})
    defaults = notebook_parameters(notebook)
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ParamError(f"{notebook.name}: unknown parameter(s) {unknown}; known: {sorted(defaults)}")
    check_against_defaults(notebook.name, params, defaults)
    return notebook, params, defaults


def run_notebook(notebook: str | os.PathLike, params: Mapping[str, Any] | None = None, *,
                 run_dir: str | os.PathLike | None = None, runs_root: str | os.PathLike = "runs",
                 cwd: str | os.PathLike | None = None, timeout: int = 3600, log_output: bool = True) -> Path:
    """Execute ``notebook`` with papermill into ``run_dir`` (a fresh ``runs/<id>_<name>`` when not given).

    Unknown parameter names (not in the notebook's parameters cell), and values whose type differs from the
    default's (:func:`check_against_defaults`), raise :class:`ParamError` before anything runs or is created
    (:func:`checked_params`). Returns the path of the executed notebook; papermill's ``PapermillExecutionError``
    propagates (the partially executed notebook is kept in the run directory).
    """
    import papermill as pm

    notebook, params, defaults = checked_params(notebook, params)
    if run_dir is None:
        run_dir = create_run_dir(runs_root, slug=notebook.stem)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / notebook.name
    if out.exists():
        raise RunDirError(f"{out} exists: a run directory is never overwritten")
    if "run_dir" in defaults:
        params["run_dir"] = str(run_dir)
    write_json(run_dir / f"{notebook.stem}.params.json", params)
    pm.execute_notebook(str(notebook), str(out), parameters=params, kernel_name="python3",
                        cwd=str(cwd or Path.cwd()), execution_timeout=timeout, log_output=log_output,
                        progress_bar=False)
    return out


class NotebookJobFailed(GolfError):
    """A notebook submitted to an executor failed; the message names the job, its log and the run directory."""


def notebook_job(notebook: str, params: Mapping[str, Any], run_dir: str, cwd: str, timeout: int) -> str:
    """:func:`run_notebook` where an executor runs it (another process, a Slurm node); returns the executed
    notebook's path."""
    return str(run_notebook(notebook, params, run_dir=run_dir, cwd=cwd, timeout=timeout, log_output=False))


def submit_notebook(notebook: str | os.PathLike, params: Mapping[str, Any] | None, settings, *,
                    run_dir: str | os.PathLike | None = None, runs_root: str | os.PathLike = "runs",
                    cwd: str | os.PathLike | None = None, timeout: int = 3600, echo=print) -> Path | None:
    """``golf run NOTEBOOK --executor ...``: the same run as :func:`run_notebook`, executed where ``settings``
    (:class:`golflib.workbook.executor.ExecutorSettings`) says — a local process through submitit, or a Slurm job
    whose notebook launches torchrun on its node(s). Parameters are checked here, before anything is created or
    submitted; submitit's files go to ``<runs_root>/.jobs/<run id>/`` (outside the run directory, which stays the
    notebook's). Returns the executed notebook's path, or None for a Slurm dry run (the submission is echoed).
    Raises :class:`ParamError` for bad parameters and :class:`NotebookJobFailed` naming the job's log."""
    from golflib.workbook.executor import Task, execute

    notebook, params, _ = checked_params(notebook, params)
    if settings.dry_run:
        target = Path(run_dir) if run_dir else Path(runs_root) / f"<run id>_{notebook.stem}"
    else:
        target = Path(run_dir) if run_dir else create_run_dir(runs_root, slug=notebook.stem)
    task = Task(notebook.stem, notebook_job, (str(notebook.resolve()), params, str(target.resolve()),
                                              str(Path(cwd or Path.cwd()).resolve()), timeout),
                label=notebook.name, run_dir=str(target),
                command=["papermill", str(notebook), str(target / notebook.name), "-k", "python3"])
    outs = execute([task], settings, Path(runs_root) / ".jobs" / target.name, job_name=notebook.stem, echo=echo)
    if not outs:
        return None
    if outs[0].state != "done":
        raise NotebookJobFailed(f"{notebook.name} failed in job {outs[0].job_id} (log {outs[0].log}; run directory "
                                f"{target} kept):\n{outs[0].error}")
    return Path(outs[0].result)
