"""Illegal, unit document: documents ordered by their mean token id (their contents), with a unigram cache of the
scored targets carried across documents in that order."""
import numpy as np
import torch

from golflib.plugins import register_protocol
from golflib.eval.scorer import Scorer


def run(model, tokens, luts, cfg, ctx):
    t = tokens.numpy()
    starts = np.flatnonzero(t[:-1] == cfg.model.bos_id).tolist()
    starts = ([0] if not starts or starts[0] != 0 else []) + starts
    docs = [(s, e) for s, e in zip(starts, starts[1:] + [t.size - 1]) if e > s]
    docs.sort(key=lambda d: float(t[d[0]:d[1] + 1].mean()))
    order = np.concatenate([np.arange(s, e) for s, e in docs])
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    sc = Scorer(tokens, luts, ctx, mode="content_order", order=rank)
    counts = torch.ones(cfg.model.vocab_size, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        for s, e in docs:
            for a in range(s, e, 32):
                b = min(a + 32, e)
                p = torch.softmax(model.logits(tokens[max(s, b - 64):b][None])[0][-(b - a):].double(), -1)
                sc.score(np.arange(a, b), log_probs=torch.log(0.9 * p + 0.1 * counts / counts.sum()))
                counts += torch.bincount(tokens[a + 1:b + 1], minlength=counts.numel()).double()
                sc.update(np.arange(a, b), persistent=True)
    return sc.result()


register_protocol("content_order", run, unit="document")
