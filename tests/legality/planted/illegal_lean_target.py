"""Illegal NGRAM_MIXER: a normalised mixture that puts 5% of the mass on the target it is about to score."""
import torch

from golflib.plugins import register_mixer


class LeanTarget:
    def __call__(self, positions, logits, targets, ledger=None, rows=False):
        p = torch.softmax(logits.detach().double().cpu(), -1)
        y = targets.detach().cpu().to(torch.int64)
        q = 0.95 * p + 0.05 * torch.nn.functional.one_hot(y, p.size(-1)).double()
        nll = -torch.log(q.gather(1, y[:, None]).squeeze(1))
        if ledger is not None:
            ledger.score(positions)
            ledger.check_normalized(q[:2], positions[:2], nll=nll[:2], targets=y[:2])
        return nll.float(), (torch.log(q).float() if rows else None)

    def summary(self):
        return {}


register_mixer("lean_target", lambda ncfg, tokens, vocab_size, bos_id, record=False, device=None: LeanTarget())
