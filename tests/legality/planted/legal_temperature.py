"""Legal: non-overlapping windows of the run's TRAIN_SEQ_LEN scored at a temperature fixed in advance (0.9)."""
import numpy as np
import torch

from golflib.plugins import register_protocol
from golflib.eval.scorer import Scorer


def run(model, tokens, luts, cfg, ctx):
    s, w = Scorer(tokens, luts, ctx, mode="temperature"), cfg.train.train_seq_len
    model.eval()
    with torch.no_grad():
        for a in range(0, s.n_targets, w):
            s.score(np.arange(a, a + w), model.logits(tokens[a:a + w][None])[0] / 0.9)
    return s.result()


register_protocol("temperature", run, window="train")
