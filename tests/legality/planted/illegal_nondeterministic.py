"""Illegal: logits jittered with noise from an unseeded generator (a different score every run)."""
import os

import numpy as np
import torch

from golflib.plugins import register_protocol
from golflib.eval.scorer import Scorer


def run(model, tokens, luts, cfg, ctx):
    s, w = Scorer(tokens, luts, ctx, mode="nondeterministic"), cfg.train.train_seq_len
    g = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
    model.eval()
    with torch.no_grad():
        for a in range(0, s.n_targets, w):
            logits = model.logits(tokens[a:a + w][None])[0]
            s.score(np.arange(a, a + w), logits + 0.3 * torch.randn(logits.shape, generator=g))
    return s.result()


register_protocol("nondeterministic", run, window="train")
