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


def test_940_shape_with_primes_in_an_array_and_target_names_is_flagged():
    """The #940 family's real shape (issue 15): the multipliers live in an array, the target is ``tgt_np``."""
    shape_940 = """
    import numpy as np
    PRIMES = np.array([np.uint64(100003), np.uint64(999983), np.uint64(7919)], dtype=np.uint64)
    def keys(val_np, jv, ctx_w, mask):
        ctx_hash = np.zeros(len(jv), dtype=np.uint64)
        for k in range(ctx_w):
            ctx_hash ^= val_np[jv - (ctx_w - k)].astype(np.uint64) * PRIMES[k % len(PRIMES)]
        tgt_np = val_np[jv].astype(np.uint64)
        return ((ctx_hash ^ (tgt_np * PRIMES[ctx_w % len(PRIMES)])) & mask).astype(np.int64)
    """
    assert rules(shape_940) == [("target-in-hash", "flag", 9)]
    for name, mult in (("targets", "mult"), ("y", "hash_prime"), ("tgt_ids", "big")):
        src = f"""
        {mult} = 1000003
        def key(h, {name}):
            return h ^ ({name} * {mult})
        """
        assert rules(src) == [("target-in-hash", "flag", 4)], name
    # context-only hashing with a prime array, and a target used without a multiplier, are not flagged
    ok = """
    primes = [100003, 999983]
    def ctx_key(prev, cur):
        return (prev * primes[0]) ^ (cur * primes[1])
    def count(table, ctx, y, V):
        table[ctx * V + y] += 1
    """
    assert rules(ok) == []


def test_a_no_grad_block_counts_as_scoring_only_when_it_scores_val():
    ema_then_train = """
    import torch
    def adapt(model, ema, val_tokens, opt):
        with torch.no_grad():
            for e, p in zip(ema, model.parameters()):
                e.mul_(0.99).add_(p)
        loss = model(val_tokens[:-1], val_tokens[1:])
        loss.backward()
        opt.step()
    """
    assert rules(ema_then_train) == [("val-step-before-score", "flag", 8), ("val-step-before-score", "flag", 9)]
    scored_then_train = ema_then_train.replace("for e, p in zip(ema, model.parameters()):\n"
                                               "                e.mul_(0.99).add_(p)",
                                               "nll = model(val_tokens[:-1], val_tokens[1:])")
    assert rules(scored_then_train) == [("val-step", "review", 7), ("val-step", "review", 8)]


def test_a_compile_warm_up_on_val_is_flagged_even_after_scoring():
    warm = """
    import torch
    def evaluate(model, val_tokens, opt):
        with torch.no_grad():
            base = model(val_tokens[:-1], val_tokens[1:])
        warm_batch = val_tokens[:4096]
        model(warm_batch[:-1], warm_batch[1:]).backward()
        opt.step()
        return base
    def compile_warmup(model, val_tokens, opt):
        model(val_tokens[:-1], val_tokens[1:]).backward()
    """
    got = rules(warm)
    assert got == [("val-step-before-score", "flag", 7), ("val-step-before-score", "flag", 8),
                   ("val-step-before-score", "flag", 11)]
    assert "compile warm-up" in lint_source(textwrap.dedent(warm))[0].message
    random_warm = warm.replace("warm_batch = val_tokens[:4096]", "warm_batch = torch.randint(0, 1024, (4096,))")
    assert ("val-step-before-score", "flag", 7) not in rules(random_warm)  # the records warm up on random tokens


def test_well_known_gpu_packages_are_never_local_imports_and_newer_syntax_is_skipped(tmp_path):
    src = ("from flash_attn_interface import flash_attn_func\nimport triton\nimport triton.language as tl\n"
           "from triton.tools.tensor_descriptor import TensorDescriptor\nimport flash_attn\n")
    assert rules(src, tmp_path) == []
    newer = 'x = 1\nprint(f"{d["k"]}")\ndef leak(m, val_tokens, opt):\n    m(val_tokens).backward()\n'
    found = rules(newer, tmp_path)
    if sys.version_info < (3, 12):  # a PEP 701 f-string: blanked, reported, and the rest still linted
        assert ("unparsed", "review", 2) in found
    assert ("val-step-before-score", "flag", 4) in found


@pytest.mark.skipif(not __import__("os").environ.get("GOLF_RECORDS_DIR"),
                    reason="set GOLF_RECORDS_DIR to a checkout of openai/parameter-golf to lint its records")
def test_the_challenge_records_lint_without_flags():
    """Development check against the challenge repository (not shipped): every record's train_gpt.py in
    records/track_10min_16mb has no flag except 2026-04-06_SP8192_HessianSDClip, whose train_gpt.py execs a second
    file (docs/LOG.md, 2026-12-07)."""
    from pathlib import Path

    root = Path(__import__("os").environ["GOLF_RECORDS_DIR"]) / "records" / "track_10min_16mb"
    flagged = {p.parent.name for p in root.glob("*/train_gpt.py") if summary(lint_file(p))["flag"]}
    assert flagged == {"2026-04-06_SP8192_HessianSDClip_ProgressiveRecurrence"}
