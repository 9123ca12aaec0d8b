"""Illegal: score-first TTT run backwards through the stream (last chunk first) under a declared order."""
import numpy as np
import torch

from golflib.plugins import register_protocol
from golflib.eval.scorer import Scorer


def run(model, tokens, luts, cfg, ctx):
    n, w, chunk = tokens.numel() - 1, cfg.train.train_seq_len, 256
    s = Scorer(tokens, luts, ctx, mode="backwards", order=np.arange(n)[::-1].copy())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for c in reversed(range(0, n, chunk)):
        end = min(c + chunk, n)
        model.eval()
        with torch.no_grad():
            for a in reversed(range(c, end, w)):
                s.score(np.arange(a, a + w)[::-1].copy(), model.logits(tokens[a:a + w][None])[0].flip(0))
        model.train()
        model(tokens[c:end].view(-1, w), tokens[c + 1:end + 1].view(-1, w)).backward()
        opt.step()
        opt.zero_grad()
        s.update(np.arange(c, end), persistent=True)
    return s.result()


register_protocol("backwards", run, window="train", unit="document")
