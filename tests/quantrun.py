"""A briefly trained tiny run with both artifacts (int8+zlib and int6+entropy), shared by the quantization tests."""

from __future__ import annotations

from pathlib import Path

from conftest import REPO, TINY, run_golf_train, set_args

# KEEP_FLOAT_MAX_NUMEL scaled like the records' 65,536 to width 64 (x (64/512)^2): block matrices and the embedding
# are quantized, control tensors and vectors pass through (the mixed export size-tests every class, issue 11)
QUANT_RUN = {**TINY, "ITERATIONS": 60, "WARMDOWN_ITERS": 20, "EVAL_STRIDE": 0, "MIXED_EXPORT": 1,
             "GPTQ_CALIBRATION_BATCHES": 8, "GPTQ_RESERVE_SECONDS": 1.0, "MAX_WALLCLOCK_SECONDS": 300.0,
             "KEEP_FLOAT_MAX_NUMEL": 1024}


def train_quant_run(run_dir: Path, embedded_data: dict, **extra) -> Path:
    """Train the tiny model of :data:`QUANT_RUN` into ``run_dir`` (fails the test on a non-zero exit)."""
    overrides = {**QUANT_RUN, "DATA_PATH": embedded_data["data_path"],
                 "TOKENIZER_PATH": embedded_data["tokenizer_path"], **extra}
    proc = run_golf_train(["--preset", "cpu-tiny", "--run-dir", str(run_dir), *set_args(overrides)], cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir
