"""Legal, unit document: documents scored longest first (an order read from the BOS boundaries only), each in stream
order, with a per-document logit bias learned from the document's scored targets and reset between documents."""
import numpy as np
import torch

from golflib.plugins import register_protocol
from golflib.eval.scorer import Scorer


def documents(tokens, bos_id):
    starts = np.flatnonzero(tokens[:-1].numpy() == bos_id).tolist()
    starts = ([0] if not starts or starts[0] != 0 else []) + starts
    ends = starts[1:] + [tokens.numel() - 1]
    return [(s, e) for s, e in zip(starts, ends) if e > s]


def run(model, tokens, luts, cfg, ctx):
    docs = sorted(documents(tokens, cfg.model.bos_id), key=lambda d: (-(d[1] - d[0]), d[0]))
    order = np.zeros(tokens.numel() - 1, dtype=np.int64)
    rank = 0
    for s, e in docs:
        order[s:e] = np.arange(rank, rank + e - s)
        rank += e - s
    sc, w = Scorer(tokens, luts, ctx, mode="doc_order", order=order), 32
    model.eval()
    with torch.no_grad():
        for s, e in docs:
            bias = torch.zeros(cfg.model.vocab_size)
            for a in range(s, e, w):
                b = min(a + w, e)
                x = tokens[max(s, b - 64):b]
                logits = model.logits(x[None])[0][-(b - a):] + bias
                sc.score(np.arange(a, b), logits)
                bias[tokens[a + 1:b + 1]] += 0.05
                sc.update(np.arange(a, b))
            sc.reset()
    return sc.result()


register_protocol("doc_order", run, unit="document")
