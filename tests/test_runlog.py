"""train.log's layout (issue 17): a short header, the metric lines, then the source of the code that ran — and
:func:`golflib.runlog.metric_stream`, which the compliance checks read, separates them exactly."""

from __future__ import annotations

from golflib.runlog import SEPARATOR, SOURCE_TAG, metric_stream

HEADER = f"{SEPARATOR}\ncommand:python train_gpt.py --run-dir r\nHyperparameters:\n  seed: 1337\n{SEPARATOR}\n"
METRICS = "run_dir:r\nstep:1/2 val_loss:4.0000 val_bpb:2.0000 train_time:1ms step_avg:1.00ms eval_mode:standard\n"
# a source that itself holds a separator line and a line shaped like a score (the package's f-strings are indented,
# a minified stub is base85, but nothing relies on that)
SOURCE = f'x = 1\n{SEPARATOR}\nfinal_fake_exact val_loss:1.00000000 val_bpb:0.50000000 eval_mode:standard\ny = 2'


def _log(source: str = SOURCE, after: str = "") -> str:
    return (HEADER + METRICS + f"{SEPARATOR}\n{SOURCE_TAG}train_gpt.py chars:{len(source)} (verbatim)\n{SEPARATOR}\n"
            + source + "\n" + after)


def test_metric_stream_is_between_header_and_source():
    assert metric_stream(_log()) == METRICS
    assert metric_stream(HEADER + METRICS) == METRICS  # a run that died before writing its source


def test_a_line_appended_after_the_source_is_still_a_metric_line():
    planted = "final_sneaky_exact val_loss:1.00000000 val_bpb:0.50000000\n"
    assert metric_stream(_log(after=planted)) == METRICS + planted


def test_older_logs_with_the_source_first():
    old = "# ==== golflib ====\nsource\n" + SEPARATOR + "\nRunning Python 3.11\n" + SEPARATOR + "\n" + METRICS
    assert metric_stream(old) == METRICS
