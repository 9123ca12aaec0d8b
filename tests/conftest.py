"""Shared fixtures: the embedded corpus prepared once per session, and tiny configs that train in seconds."""

from __future__ import annotations

import os

# Tiny test models gain nothing from a second thread, and spinning OpenMP threads slow everything down badly when
# other processes share the cores (subprocess trainings, torchrun ranks). Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# numpy's AVX-512 kernels (np.power among them) round differently in the last bit from its AVX2 ones; the records'
# coprime loader draws shards with probabilities built by np.power, so one flipped draw after ~900 batches changes
# the whole stream. The loader fixtures were taken with AVX2-level dispatch: the suite runs numpy with AVX-512 off
# (names of numpy >= 2.4 and of earlier releases; unknown names are ignored). docs/LOG.md, 2026-12-07.
os.environ.setdefault("NPY_DISABLE_CPU_FEATURES",
                      "X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL")
import subprocess
import sys
from pathlib import Path

import pytest

from golflib.config import Config
from golflib.data.prepare import dataset_paths, prepare_dataset
from golflib.presets import resolve

REPO = Path(__file__).resolve().parents[1]

# Tiny model and val slice: the full code path in a few seconds on 2 CPU cores.
TINY = {
    "NUM_LAYERS": 2, "MODEL_DIM": 64, "NUM_HEADS": 2, "NUM_KV_HEADS": 1, "MLP_MULT": 2.0,
    "TRAIN_SEQ_LEN": 64, "TRAIN_BATCH_TOKENS": 1024, "GLOBAL_MICROBATCHES": 2, "WARMUP_STEPS": 0,
    "MAX_WALLCLOCK_SECONDS": 0.0, "ITERATIONS": 30, "WARMDOWN_ITERS": 10, "VAL_LOSS_EVERY": 0,
    "TRAIN_LOG_EVERY": 5, "VAL_BATCH_SIZE": 8192, "VAL_MAX_TOKENS": 8192, "EVAL_STRIDE": 32, "EVAL_BATCH_SEQS": 16,
    "MUON_MOMENTUM_WARMUP_STEPS": 10, "TTT_ENABLED": 0,  # cpu-tiny's TTT only where a test asks for it (TTT_TINY)
    "NGRAM_ENABLED": 0,  # likewise cpu-tiny's n-gram mixing
}


@pytest.fixture(scope="session")
def embedded_data(tmp_path_factory) -> dict:
    """The embedded corpus exported once (vocab 1024): ``{"root", "entry", "data_path", "tokenizer_path"}``."""
    root = tmp_path_factory.mktemp("data")
    entry = prepare_dataset(root)
    data_path, tok_path = dataset_paths(root, entry["name"])
    return {"root": root, "entry": entry, "data_path": data_path, "tokenizer_path": tok_path}


@pytest.fixture(scope="session")
def caseops_data(tmp_path_factory) -> tuple:
    """The embedded corpus's CaseOps export (`golf data prepare --caseops`), once per session:
    ``(root, entry, data_path, tokenizer_path)``."""
    root = tmp_path_factory.mktemp("caseops")
    entry = prepare_dataset(root, caseops=True)
    data_path, tok_path = dataset_paths(root, entry["name"])
    return root, entry, data_path, tok_path


@pytest.fixture()
def tiny_overrides(embedded_data) -> dict:
    return {**TINY, "DATA_PATH": str(embedded_data["data_path"]),
            "TOKENIZER_PATH": str(embedded_data["tokenizer_path"])}


@pytest.fixture()
def tiny_cfg(tiny_overrides) -> Config:
    return resolve("cpu-tiny", tiny_overrides, environ={})


# All three TTT kinds at toy settings on top of TINY (shared by the TTT run, audit and sweep-notebook tests).
TTT_TINY = {
    "ITERATIONS": 40, "VAL_MAX_TOKENS": 4096, "TTT_ENABLED": 1, "TTT_KINDS": "chunked,lora,phased",
    "TTT_CHUNK_TOKENS": 1024, "TTT_EPOCHS": 2, "TTT_LR": 0.01, "TTT_BATCH_SEQS": 8, "TTT_LORA_RANK": 4,
    "TTT_LORA_LR": 0.003, "TTT_CHUNK_SIZE": 32, "TTT_BATCH_SIZE": 8, "PHASED_TTT_PREFIX_DOCS": 8,
    "PHASED_TTT_NUM_PHASES": 2, "GLOBAL_TTT_CHUNK_TOKENS": 1024, "GLOBAL_TTT_BATCH_SEQS": 8,
    # the n-gram mixer after the model alone and after two TTT kinds (golflib.eval.ngram)
    "NGRAM_ENABLED": 1, "NGRAM_PROTOCOLS": "sliding,chunked,lora", "NGRAM_TILT_BETA": 2.0,
}


@pytest.fixture(scope="session")
def ttt_run(tmp_path_factory, embedded_data) -> Path:
    """A tiny training run whose result.json carries all three TTT kinds (see TTT_TINY)."""
    overrides = {**TINY, **TTT_TINY, "DATA_PATH": embedded_data["data_path"],
                 "TOKENIZER_PATH": embedded_data["tokenizer_path"]}
    run_dir = tmp_path_factory.mktemp("ttt_runs") / "tiny_ttt"
    proc = run_golf_train(["--preset", "cpu-tiny", "--run-dir", str(run_dir), *set_args(overrides)], cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir


def run_golf_train(args: list[str], cwd: Path, nproc: int | None = None, env: dict | None = None,
                   timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m golflib.train`` (under torchrun when ``nproc``) as a subprocess; return the result."""
    cmd = [sys.executable]
    if nproc:
        cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += ["-m", "golflib.train", *args]
    full_env = {k: v for k, v in os.environ.items()}
    full_env.update(env or {})
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def set_args(overrides: dict) -> list[str]:
    out = []
    for k, v in overrides.items():
        out += ["--set", f"{k}={v}"]
    return out


@pytest.fixture(scope="session")
def quant_run(tmp_path_factory, embedded_data):
    """A tiny trained run directory with ``config.json``, ``final_model.safetensors`` and both artifacts
    (int8+zlib and int6+entropy), shared by the quantization tests (see ``tests/quantrun.py``)."""
    from quantrun import train_quant_run

    return train_quant_run(tmp_path_factory.mktemp("qruns") / "tiny", embedded_data)


def pytest_sessionfinish(session, exitstatus):
    """Every ``result.json`` the suite wrote (under pytest's temporary base directory) must validate against the
    RunResult schema (golflib/schemas); an invalid one fails the session and is named. Files a test makes invalid
    on purpose live under a directory named ``invalid``."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    try:
        base = factory.getbasetemp()
    except (OSError, ValueError):
        return
    from golflib.runresult import RunResultError
    from golflib.workbook.resultfile import load_run_result

    bad, n = [], 0
    for path in sorted(Path(base).rglob("result.json")):
        if "invalid" in path.relative_to(base).parts:
            continue
        n += 1
        try:
            load_run_result(path)
        except (RunResultError, ValueError) as e:
            bad.append(str(e))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and n:
        reporter.write_line(f"result.json schema: {n - len(bad)}/{n} files written by the suite validate")
    if bad:
        if reporter is not None:
            for line in bad:
                reporter.write_line(f"INVALID {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
