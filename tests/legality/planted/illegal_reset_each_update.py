"""Illegal: adapts on each chunk before scoring it, reports score → update → reset() so C1 forgets the update."""
import numpy as np
import torch

from golflib.plugins import register_protocol
from golflib.eval.scorer import Scorer


def run(model, tokens, luts, cfg, ctx):
    s, w, chunk = Scorer(tokens, luts, ctx, mode="reset_each_update"), cfg.train.train_seq_len, 128
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for c in range(0, s.n_targets, chunk):
        end = min(c + chunk, s.n_targets)
        model.train()
        model(tokens[c:end].view(-1, w), tokens[c + 1:end + 1].view(-1, w)).backward()
        opt.step()
        opt.zero_grad()
        model.eval()
        with torch.no_grad():
            for a in range(c, end, w):
                s.score(np.arange(a, a + w), model.logits(tokens[a:a + w][None])[0])
        s.update(np.arange(c, end))
        s.reset()
    return s.result()


register_protocol("reset_each_update", run, window="train")
