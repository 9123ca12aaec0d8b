"""Illegal: three full passes over val at temperatures 0.8, 1.0, 1.25, each with its own (clean) ledger; the best
pass is reported. Every pass goes through the run's scoring context."""
import torch

from golflib.eval.ledger import Ledger
from golflib.plugins import register_protocol
from golflib.eval.scorer import Scorer


def run(model, tokens, luts, cfg, ctx):
    w, best = cfg.train.train_seq_len, None
    model.eval()
    for temp in (0.8, 1.0, 1.25):
        s = Scorer(tokens, luts, ctx.replace(ledger=Ledger(tokens.numel() - 1)), mode="best_of_n")
        with torch.no_grad():
            for a in range(0, s.n_targets, w):
                s.score(torch.arange(a, a + w), model.logits(tokens[a:a + w][None])[0] / temp)
        res = s.result()
        best = res if best is None or res.val_bpb < best.val_bpb else best
    return best


register_protocol("best_of_n", run, window="train")
