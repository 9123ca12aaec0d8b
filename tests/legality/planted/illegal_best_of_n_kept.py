"""Illegal: tries three temperatures over all of val off the record, then scores val once at the best one."""
import torch

from golflib.plugins import register_protocol
from golflib.eval.scorer import Scorer


def run(model, tokens, luts, cfg, ctx):
    w = cfg.train.train_seq_len
    model.eval()

    def total(temp, c):
        s = Scorer(tokens, luts, c, mode="best_of_n_kept")
        with torch.no_grad():
            for a in range(0, s.n_targets, w):
                s.score(torch.arange(a, a + w), model.logits(tokens[a:a + w][None])[0] / temp)
        return s.result()
    best = min((0.8, 1.0, 1.25), key=lambda t: total(t, ctx.replace(ledger=None, dump=None)).val_loss)
    return total(best, ctx)


register_protocol("best_of_n_kept", run, window="train")
