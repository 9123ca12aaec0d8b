"""Illegal: a temperature fitted on all of val (grid search of the mean NLL) before val is scored with it."""
import numpy as np
import torch

from golflib.plugins import register_protocol
from golflib.eval.scorer import Scorer


def run(model, tokens, luts, cfg, ctx):
    w = cfg.train.train_seq_len
    model.eval()
    n = (tokens.numel() - 1) // w * w
    with torch.no_grad():
        logits = torch.cat([model.logits(tokens[a:a + w][None])[0] for a in range(0, n, w)])
    y = tokens[1:n + 1]
    grid = np.linspace(0.5, 2.0, 31)
    temp = float(grid[int(np.argmin([torch.nn.functional.cross_entropy(logits / t, y).item() for t in grid]))])
    s = Scorer(tokens, luts, ctx, mode="temperature_fit")
    for a in range(0, n, w):
        s.score(np.arange(a, a + w), logits[a:a + w] / temp)
    return s.result({"temperature": temp})


register_protocol("temperature_fit", run, window="train")
