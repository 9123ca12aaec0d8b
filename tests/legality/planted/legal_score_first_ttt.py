"""Legal: score-first TTT — each 256-target chunk is scored, then the model takes one SGD step on it."""
import numpy as np
import torch

from golflib.plugins import register_protocol
from golflib.eval.scorer import Scorer


def run(model, tokens, luts, cfg, ctx):
    s, w, chunk = Scorer(tokens, luts, ctx, mode="score_first_ttt"), cfg.train.train_seq_len, 256
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for c in range(0, s.n_targets, chunk):
        model.eval()
        with torch.no_grad():
            for a in range(c, min(c + chunk, s.n_targets), w):
                s.score(np.arange(a, a + w), model.logits(tokens[a:a + w][None])[0])
        model.train()
        end = min(c + chunk, s.n_targets)
        x, y = tokens[c:end].view(-1, w), tokens[c + 1:end + 1].view(-1, w)
        model(x, y).backward()
        opt.step()
        opt.zero_grad()
        s.update(np.arange(c, end), persistent=True)
    return s.result()


register_protocol("score_first_ttt", run, window="train")
