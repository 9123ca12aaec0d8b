"""Illegal: each 256-target chunk is trained on, then scored; the calls are reported in the legal order."""
import numpy as np
import torch

from golflib.plugins import register_protocol
from golflib.eval.scorer import Scorer


def run(model, tokens, luts, cfg, ctx):
    s, w, chunk = Scorer(tokens, luts, ctx, mode="train_then_score"), cfg.train.train_seq_len, 256
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
        s.update(np.arange(c, end), persistent=True)  # reported after the scores
    return s.result()


register_protocol("train_then_score", run, window="train")
