"""Static lint of train_gpt.py (SPEC §4.8 item 6) on planted snippets and on golflib's own bundle."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from golflib.presets import resolve
from golflib.record.compliance import check_script_lint
from golflib.record.lint import lint_file, lint_source, summary
from golflib.record.script import make_script


def rules(src: str, folder=".") -> list[tuple[str, str, int]]:
    return [(f.rule, f.severity, f.line) for f in lint_source(textwrap.dedent(src), folder)]


def test_940_style_hash_with_the_target_is_flagged_and_a_count_table_is_not():
    bad = """
    def ngram_prob(ctx_hash, tgt, table, mask):
        key = (ctx_hash ^ (tgt * 2654435761)) & mask
        return table[key]
    """
    assert rules(bad) == [("target-in-hash", "flag", 3)]
    ok = """
    def add_counts(ctx_id, y, V, keys):
        keys.append(ctx_id * V + y)   # a (context, follower) count table: the distribution is normalised later
    def ctx_hash(prev, tok):
        return (prev * 1000003) ^ tok  # context-only hash
    """
    assert rules(ok) == []


def test_training_on_val_before_scoring_is_flagged_score_first_is_for_review():
    prequant = """
    import torch
    def prequant_ttt(model, val_tokens, opt):
        for epoch in range(10):
            loss = model(val_tokens[:-1], val_tokens[1:])
            loss.backward()
            opt.step()
        return evaluate(model, val_tokens)
    def evaluate(model, val_tokens):
        with torch.no_grad():
            return model(val_tokens[:-1], val_tokens[1:])
    """
    assert rules(prequant) == [("val-step-before-score", "flag", 6), ("val-step-before-score", "flag", 7)]
    score_first = """
    import torch
    def ttt(model, val_tokens, opt, chunks):
        for c in chunks:
            with torch.no_grad():
                nll = model(val_tokens[c])
            loss = model(val_tokens[c]).mean()
            loss.backward()
            opt.step()
    """
    assert rules(score_first) == [("val-step", "review", 8), ("val-step", "review", 9)]
    training_loop = """
    def train(model, loader, val_tokens, opt, sched):
        x, y = loader.next_batch()
        loss = model(x, y)
        loss.backward()
        opt.step()
        sched.step()
        return evaluate(model, val_tokens)
    """
    assert rules(training_loop) == []  # reads val for its eval, trains on training batches


def test_train_data_at_eval_network_and_local_files(tmp_path):
    src = """
    import glob, os, subprocess
    import helper
    def eval_with_ttt(model, args):
        files = glob.glob(args.train_files)
        os.system("lrzip -d blob")
        exec(open("extra.py").read())
    """
    (tmp_path / "helper.py").write_text("X = 1\n")
    got = rules(src, tmp_path)
    assert ("network-or-subprocess", "review", 2) in got and ("network-or-subprocess", "review", 6) in got
    assert ("local-import", "flag", 3) in got and ("local-import", "flag", 7) in got
    assert ("train-data-at-eval", "flag", 4) in got
    assert rules("import numpy\nimport torch.nn as nn\nfrom collections import deque\n", tmp_path) == []


@pytest.fixture(scope="module")
def tiny_script():
    # all three TTT kinds: a bundle carries only the kinds its config runs (golflib.seams)
    return make_script(resolve("cpu-tiny", {"TTT_KINDS": "chunked,lora,phased"}, environ={}), form="compressed",
                       codec="brotli")


def test_golflib_bundle_has_no_flag_and_its_ttt_steps_are_listed_for_review(tiny_script):
    found = lint_source(tiny_script.readable)
    s = summary(found)
    print("golflib bundle lint:", s)
    assert s["flag"] == 0
    # every TTT training step of the three kinds is found, each after scoring
    for fn in ("eval_ttt_chunked", "_run_batch", "global_sgd"):
        assert any(f.rule == "val-step" and f" in {fn}(), " in f.message for f in found), (fn, found)
    # the stub is linted after extraction; its local names are minified, so the readable twin is the precise input
    assert summary(lint_source(tiny_script.counted))["flag"] == 0
    check = check_script_lint(tiny_script.counted)
    assert check.ok and check.required and "0 flag(s)" in check.detail
    planted = tiny_script.readable + "\n\ndef leak(model, val_tokens, opt):\n    model(val_tokens).backward()\n"
    bad = check_script_lint(planted)
    assert not bad.ok and "val-step-before-score" in bad.detail


def test_golf_lint_cli(tiny_script, tmp_path):
    good = tmp_path / "train_gpt.py"
    good.write_text(tiny_script.counted)
    proc = subprocess.run([sys.executable, "-m", "golflib.cli", "lint", str(good), "--json"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["flag"] == 0
    bad = tmp_path / "bad" / "train_gpt.py"
    bad.parent.mkdir()
    bad.write_text("def t(m, val_tokens, opt):\n    m(val_tokens).backward()\n    opt.step()\n")
    proc = subprocess.run([sys.executable, "-m", "golflib.cli", "lint", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1 and "2 flag(s), 0 for review" in proc.stdout
    assert f"{bad}:2: flag [val-step-before-score]" in proc.stdout
    with pytest.raises(FileNotFoundError, match="no such script"):
        lint_file(tmp_path / "missing.py")
