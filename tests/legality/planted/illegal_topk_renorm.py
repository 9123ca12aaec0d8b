"""Illegal NGRAM_MIXER: scores a mixture whose top-8 entries are renormalised to sum to 1 while the rest keep their
mass (the whole sums to more than 1); the C2 check is shown the normalised model rows instead."""
import torch

from golflib.plugins import register_mixer


class TopK:
    def __call__(self, positions, logits, targets, ledger=None, rows=False):
        p = torch.softmax(logits.detach().double().cpu(), -1)
        top = p.topk(8, -1)
        q = p.clone()
        q.scatter_(1, top.indices, top.values / top.values.sum(-1, keepdim=True))
        y = targets.detach().cpu().to(torch.int64)
        nll = -torch.log(q.gather(1, y[:, None]).squeeze(1))
        if ledger is not None:
            ledger.score(positions)
            ledger.check_normalized(p[:2], positions[:2])  # the rows shown are not the rows scored
        return nll.float(), (torch.log(p).float() if rows else None)

    def summary(self):
        return {}


register_mixer("topk_renorm", lambda ncfg, tokens, vocab_size, bos_id, record=False, device=None: TopK())
