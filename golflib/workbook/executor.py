"""One executor seam for every multi-run job: seeds, TTT sweeps, ablations and ``golf run`` (issue 18).

A job is a list of :class:`Task` (a picklable module-level function and its arguments, one per point); an
:class:`ExecutorSettings` says where the tasks run:

``local``
    one after another in this process (what golflib always did);
``submitit-local``
    parallel processes on this machine through submitit's ``LocalExecutor`` (at most ``max_parallel`` at once;
    what the tests use);
``slurm``
    a Slurm job array through submitit (``sbatch``; per job ``nodes``, ``gpus_per_node``, ``partition``,
    ``time_min``, ``account``, ``qos``, ``cpus_per_task``, ``mem_gb``; ``max_parallel`` is the array's
    parallelism). Each task starts ``torchrun`` itself (:func:`golflib.workbook.launch.distributed_args`); with
    more than one node submitit runs one task per node and the task passes torchrun the job's rendezvous
    (``--nnodes``, ``--node_rank``, ``--rdzv_backend=c10d``, ``--rdzv_endpoint=<first host>:29500``). ``dry_run``
    writes nothing and submits nothing: :func:`slurm_preview` returns the ``sbatch`` script submitit would submit
    and the torchrun line of every task.

Every task ends as an :class:`Outcome`: ``done`` with its result, or ``failed`` with the error and the path of its
log — a failure is reported, never dropped. The callers keep the per-point state (:mod:`golflib.workbook.sweepstate`)
so a sweep resumes without re-running what is done.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from golflib.errors import ConfigError

KINDS = ("local", "submitit-local", "slurm")
RDZV_PORT = 29500  # torchrun's c10d rendezvous port on the job's first node


@dataclass(frozen=True)
class ExecutorSettings:
    """Where a job's tasks run (module docstring). Notebooks pass it as a dict (``executor = {"kind": "slurm",
    "partition": "h100", "gpus_per_node": 8}``); :meth:`from_value` validates it. Raises
    :class:`~golflib.errors.ConfigError` naming the field for a bad value."""

    kind: str = "local"
    folder: str = ""  # submitit's folder (pickles, job logs); default: <the job's directory>/jobs
    max_parallel: int = 2  # tasks running at once (local processes; Slurm array parallelism)
    nodes: int = 1  # Slurm nodes per task
    gpus_per_node: int = 0  # Slurm GPUs per node; also torchrun's --nproc_per_node there (8 on 8xH100)
    cpus_per_task: int = 0  # 0: Slurm's default
    mem_gb: float = 0.0  # 0: Slurm's default
    partition: str = ""
    account: str = ""
    qos: str = ""
    time_min: int = 30  # Slurm time limit per task, minutes (a record: 10 min train + 10 min eval + start-up)
    setup: tuple[str, ...] = ()  # shell lines run before the task (module load, conda activate, ...)
    python: str = ""  # the interpreter on the nodes; default: this one
    dry_run: bool = False  # Slurm: print the submission, submit nothing

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ConfigError(f"executor.{name}={getattr(self, name)!r}: {what}")

        need(self.kind in KINDS, "kind", f"expected one of {', '.join(KINDS)}")
        for name in ("max_parallel", "nodes", "time_min"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name, "expected an integer >= 1")
        for name in ("gpus_per_node", "cpus_per_task"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, name, "expected an integer >= 0")
        need(isinstance(self.mem_gb, (int, float)) and self.mem_gb >= 0, "mem_gb", "expected a number >= 0")
        need(self.nodes == 1 or self.kind == "slurm", "nodes", "more than one node needs kind 'slurm'")
        need(not self.dry_run or self.kind == "slurm", "dry_run", "a dry run prints a Slurm submission: kind 'slurm'")
        need(all(isinstance(s, str) for s in self.setup), "setup", "expected a list of shell lines")

    @classmethod
    def from_value(cls, value: "ExecutorSettings | Mapping[str, Any] | str | None") -> "ExecutorSettings":
        """Settings from a notebook/CLI value: None or ``""`` (local), a kind name, a dict of fields, or settings.
        Raises :class:`~golflib.errors.ConfigError` for an unknown field."""
        if isinstance(value, ExecutorSettings):
            return value
        if not value:
            return cls()
        if isinstance(value, str):
            return cls(kind=value)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"executor: unknown field(s) {unknown}; known: {sorted(known)}")
        d = dict(value)
        if "setup" in d:
            d["setup"] = tuple(d["setup"])
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["setup"] = list(self.setup)
        return d

    def nproc(self, default: int) -> int:
        """torchrun's processes per node for a task: ``gpus_per_node`` on Slurm when set, else ``default``."""
        return self.gpus_per_node if self.kind == "slurm" and self.gpus_per_node else default


@dataclass
class Task:
    """One point of a job: ``fn(*args, **kwargs)`` (a module-level function: submitit pickles it), its ``key``
    (unique in the job), a ``label`` for tables, the ``run_dir`` it writes (if any), and ``command``: the torchrun
    line it will run, for :func:`slurm_preview` and the logs."""

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""
    run_dir: str = ""
    command: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """How a task ended: ``state`` ``done`` (``result``) or ``failed`` (``error``: the exception's last lines),
    the executor's ``job_id``, the ``log`` file that holds its output, and wall-clock ``seconds``."""

    key: str
    state: str
    result: Any = None
    error: str = ""
    job_id: str = ""
    log: str = ""
    seconds: float = 0.0


def _tail(text: str, n: int = 2000) -> str:
    return text if len(text) <= n else "…" + text[-n:]


def run_in_job(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The function every submitit job runs: sets the multi-node rendezvous variables that
    :func:`golflib.workbook.launch.distributed_args` reads (from submitit's ``JobEnvironment`` when the job spans
    more than one node), then calls ``fn``. On a multi-node job every node runs ``fn`` (one task per node) and the
    result of node 0 is the job's."""
    try:
        import submitit

        env = submitit.JobEnvironment()
        if env.num_nodes > 1:
            os.environ.update({"GOLF_NNODES": str(env.num_nodes), "GOLF_NODE_RANK": str(env.node),
                               "GOLF_RDZV_ENDPOINT": f"{env.hostnames[0]}:{RDZV_PORT}",
                               "GOLF_RDZV_ID": str(env.job_id)})
    except RuntimeError:  # not inside a submitit job (a direct call)
        pass
    return fn(*args, **kwargs)


def _executor(settings: ExecutorSettings, folder: Path, job_name: str):
    import submitit

    ex = submitit.AutoExecutor(folder=str(folder), cluster="local" if settings.kind == "submitit-local" else "slurm")
    ex.update_parameters(**submitit_parameters(settings, job_name))
    return ex


def submitit_parameters(settings: ExecutorSettings, job_name: str) -> dict:
    """The parameters golflib passes to submitit's ``AutoExecutor.update_parameters`` (``slurm_*`` names are
    Slurm-only; submitit's local executor ignores them)."""
    p: dict[str, Any] = {"timeout_min": settings.time_min, "name": job_name, "nodes": settings.nodes,
                         "tasks_per_node": 1}
    if settings.kind == "slurm":
        p["slurm_array_parallelism"] = settings.max_parallel
        if settings.gpus_per_node:
            p["gpus_per_node"] = settings.gpus_per_node
        if settings.cpus_per_task:
            p["cpus_per_task"] = settings.cpus_per_task
        if settings.mem_gb:
            p["mem_gb"] = settings.mem_gb
        for name in ("partition", "account", "qos"):
            if getattr(settings, name):
                p[f"slurm_{name}"] = getattr(settings, name)
        if settings.setup:
            p["slurm_setup"] = list(settings.setup)
    return p


def slurm_preview(settings: ExecutorSettings, tasks: Sequence[Task], folder: str | os.PathLike,
                  job_name: str = "golf") -> str:
    """What a ``slurm`` run would submit, without submitting: the ``sbatch`` script submitit generates for this
    job array (its ``#SBATCH`` resources, time limit and ``srun`` line, from submitit's own template) followed by
    the torchrun line each task runs inside it (rendezvous values shown as ``<...>`` when the job spans nodes).
    Raises :class:`~golflib.errors.ConfigError` unless ``settings.kind`` is ``slurm``."""
    if settings.kind != "slurm":
        raise ConfigError(f"executor.kind={settings.kind!r}: a Slurm preview needs kind 'slurm'")
    from submitit.slurm.slurm import _make_sbatch_string

    params = {"job_name": job_name, "time": settings.time_min, "nodes": settings.nodes, "ntasks_per_node": 1,
              "array_parallelism": settings.max_parallel, "map_count": len(tasks) if len(tasks) > 1 else None}
    if settings.gpus_per_node:
        params["gpus_per_node"] = settings.gpus_per_node
    if settings.cpus_per_task:
        params["cpus_per_task"] = settings.cpus_per_task
    if settings.mem_gb:
        params["mem"] = f"{int(settings.mem_gb)}GB"
    for name in ("partition", "account", "qos"):
        if getattr(settings, name):
            params[name] = getattr(settings, name)
    if settings.setup:
        params["setup"] = list(settings.setup)
    python = settings.python or shlex.quote(sys.executable)
    text = _make_sbatch_string(command=f"{python} -u -m submitit.core._submit {Path(folder)}", folder=Path(folder),
                               **params)
    lines = [text.rstrip("\n"), "", f"# inside each of the {len(tasks)} array task(s), on every node:"]
    rdzv = [f"--nnodes={settings.nodes}", "--node_rank=<node>", "--rdzv_backend=c10d",
            f"--rdzv_endpoint=<first host>:{RDZV_PORT}", "--rdzv_id=<job id>"]
    for t in tasks:
        cmd = [a for c in t.command for a in (rdzv if c == "--standalone" and settings.nodes > 1 else [c])]
        lines.append(f"# [{t.label or t.key}] " + (shlex.join(cmd) if cmd else f"{t.fn.__name__}(...)"))
    return "\n".join(lines) + "\n"


def execute(tasks: Sequence[Task], settings: ExecutorSettings, folder: str | os.PathLike, *,
            job_name: str = "golf", on_submit: Callable[[Task, str, str], None] | None = None,
            on_outcome: Callable[[Task, Outcome], None] | None = None,
            echo: Callable[[str], None] | None = print) -> list[Outcome]:
    """Run ``tasks`` where ``settings`` says and return one :class:`Outcome` per task, in task order.
    ``on_submit(task, job_id, log)`` is called when a task is handed to the executor, ``on_outcome(task,
    outcome)`` as each one ends (callers record state there, so an interrupted job loses nothing finished).
    ``folder`` holds submitit's files (``settings.folder`` overrides it). A dry run (Slurm) echoes
    :func:`slurm_preview` and returns no outcome."""
    folder = Path(settings.folder or folder)
    if settings.dry_run:
        text = slurm_preview(settings, tasks, folder, job_name)
        if echo:
            echo(text)
        return []
    if settings.kind == "local":
        return [_run_local(i, t, on_submit, on_outcome) for i, t in enumerate(tasks)]
    folder.mkdir(parents=True, exist_ok=True)
    ex = _executor(settings, folder, job_name)
    outcomes: dict[str, Outcome] = {}
    # submitit's local executor starts every job it is given: hand it max_parallel at a time; Slurm gets one array
    waves = [tasks[i:i + settings.max_parallel] for i in range(0, len(tasks), settings.max_parallel)] \
        if settings.kind == "submitit-local" else [list(tasks)]
    for wave in waves:
        t0 = time.perf_counter()
        with ex.batch():
            pending = [ex.submit(run_in_job, t.fn, *t.args, **t.kwargs) for t in wave]
        for t, job in zip(wave, pending):
            if on_submit:
                on_submit(t, str(job.job_id), str(job.paths.stdout))
            if echo:
                echo(f"[executor] {t.label or t.key}: job {job.job_id} ({settings.kind})")
        for t, job in zip(wave, pending):
            out = _wait(t, job, t0)
            outcomes[t.key] = out
            if on_outcome:
                on_outcome(t, out)
    return [outcomes[t.key] for t in tasks]


def _run_local(i: int, t: Task, on_submit, on_outcome) -> Outcome:
    job_id = f"local-{i}"
    log = str(Path(t.run_dir) / "console.log") if t.run_dir else ""
    if on_submit:
        on_submit(t, job_id, log)
    t0 = time.perf_counter()
    try:
        out = Outcome(t.key, "done", result=t.fn(*t.args, **t.kwargs), job_id=job_id, log=log)
    except Exception:  # noqa: BLE001 — every failure is recorded with its traceback, never raised past the job
        out = Outcome(t.key, "failed", error=_tail(traceback.format_exc()), job_id=job_id, log=log)
    out.seconds = time.perf_counter() - t0
    if on_outcome:
        on_outcome(t, out)
    return out


def _wait(t: Task, job, t0: float) -> Outcome:
    log = str(job.paths.stdout)
    try:
        result = job.results()[0]  # node 0's result on a multi-node job
        return Outcome(t.key, "done", result=result, job_id=str(job.job_id), log=log,
                       seconds=time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 — submitit's FailedJobError/UncompletedJobError carry the remote traceback
        return Outcome(t.key, "failed", error=_tail(remote_traceback(str(e))), job_id=str(job.job_id), log=log,
                       seconds=time.perf_counter() - t0)


def remote_traceback(message: str) -> str:
    """The job's own traceback out of submitit's failure message (which wraps it between dashed lines and ends
    with the paths of the logs), so its last line is the exception; the message itself when it has none."""
    parts = message.split("----------------------\n")
    return parts[1].strip() if len(parts) >= 3 and parts[1].strip() else message.strip()
