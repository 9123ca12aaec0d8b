"""Long phases report progress (issue 17): periodic lines with an ETA when nobody watches a bar, nothing on other
ranks; every scoring protocol and TTT kind goes through it."""

from __future__ import annotations

import io
import re

from golflib.progress import Progress


def test_lines_count_elapsed_and_eta():
    out = io.StringIO()
    with Progress(4, "ttt/doc-lora", "rounds", every=0.0, stream=out) as prog:
        for _ in prog.wrap(range(4)):
            pass
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert re.fullmatch(r"progress:ttt/doc-lora 1/4 rounds \(25%\) elapsed:\d+s eta:\d+s", lines[0])
    assert lines[-1].startswith("progress:ttt/doc-lora 4/4 rounds (100%)") and lines[-1].endswith("eta:0s")
    p = Progress(10, "x", every=0.0, stream=out)
    p.t0 -= 20.0  # 20 s in, 5 of 10 done: 20 s to go
    p.n = 5
    assert p.line(p.t0 + 20.0) == "progress:x 5/10 steps (50%) elapsed:20s eta:20s"


def test_quiet_between_lines_and_on_other_ranks():
    out = io.StringIO()
    with Progress(100, "standard", every=3600.0, stream=out) as prog:
        for _ in prog.wrap(range(100)):
            pass
    assert out.getvalue() == ""
    other = io.StringIO()
    with Progress(3, "sliding", every=0.0, stream=other, enabled=False) as prog:
        assert list(prog.wrap(range(3))) == [0, 1, 2]
    assert other.getvalue() == ""


def test_scoring_protocols_print_progress(monkeypatch, capsys):
    """The standard and sliding protocols print one line per batch when every line is due (EVERY_S = 0), on stderr;
    the TTT kinds use the same class (tests/test_ttt_run.py runs them)."""
    import torch

    import golflib.progress
    from golflib.eval.bpb import eval_standard
    from golflib.eval.sliding import eval_sliding
    from eval.test_eval import BigramTable, simple_luts

    monkeypatch.setattr(golflib.progress, "EVERY_S", 0.0)
    monkeypatch.setattr(golflib.progress, "interactive", lambda: False)
    toks = torch.randint(0, 16, (10 * 32 + 1,), generator=torch.Generator().manual_seed(0))
    eval_standard(BigramTable(), toks, simple_luts(), seq_len=32, batch_tokens=96)
    eval_sliding(BigramTable(), toks, simple_luts(), seq_len=32, stride=8, batch_seqs=5)
    err = capsys.readouterr().err.splitlines()
    std = [line for line in err if line.startswith("progress:standard ")]
    sl = [line for line in err if line.startswith("progress:sliding ")]
    assert len(std) == 4 and std[-1].startswith("progress:standard 4/4 batches (100%)")  # 10 seqs, 3 per batch
    assert len(sl) == 8 and sl[-1].startswith("progress:sliding 8/8 batches")  # 37 windows, 5 per batch


def test_gptq_calibration_and_export_print_progress(monkeypatch, capsys):
    """GPTQ calibration counts its batches and the quantized export its tensors (issue 17: every long phase)."""
    import torch

    import golflib.progress
    from golflib.model.gpt import GPT
    from golflib.presets import resolve
    from golflib.quant.calib import collect_hessians
    from golflib.quant.mixed import quantize_mixed

    monkeypatch.setattr(golflib.progress, "EVERY_S", 0.0)
    monkeypatch.setattr(golflib.progress, "interactive", lambda: False)
    cfg = resolve("cpu-tiny", {"NUM_LAYERS": 2, "MODEL_DIM": 64, "NUM_HEADS": 2, "NUM_KV_HEADS": 1}, environ={})
    torch.manual_seed(0)
    model = GPT(cfg.model)
    batches = (torch.randint(0, cfg.model.vocab_size, (2, 16)) for _ in range(3))  # a generator: no len()
    hs, stats = collect_hessians(model, batches, total=3)
    quantize_mixed(model.state_dict(), cfg.quant, hs)
    err = capsys.readouterr().err.splitlines()
    calib = [line for line in err if line.startswith("progress:gptq/calibration ")]
    export = [line for line in err if line.startswith("progress:export ")]
    assert stats["batches"] == 3 and len(calib) == 3 and calib[-1].startswith("progress:gptq/calibration 3/3 batches")
    n = len(model.state_dict())
    assert len(export) == n and export[-1].startswith(f"progress:export {n}/{n} tensors (100%)")
