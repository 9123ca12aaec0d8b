"""Legal NGRAM_MIXER: the model mixed with an add-one unigram cache of the targets scored so far (α = 0.1); each
block is scored before its targets enter the cache."""
import torch

from golflib.plugins import register_mixer


class UnigramCache:
    def __init__(self, tokens, vocab_size):
        self.tokens, self.counts = tokens.to(torch.int64).cpu(), torch.ones(vocab_size, dtype=torch.float64)

    def __call__(self, positions, logits, targets, ledger=None, rows=False):
        p = torch.softmax(logits.detach().double().cpu(), -1)
        q = 0.9 * p + 0.1 * self.counts / self.counts.sum()
        y = targets.detach().cpu().to(torch.int64)
        nll = -torch.log(q.gather(1, y[:, None]).squeeze(1))
        if ledger is not None:
            ledger.score(positions)
            ledger.check_normalized(q[:2], positions[:2], nll=nll[:2], targets=y[:2])
        self.counts += torch.bincount(y, minlength=self.counts.numel()).double()
        if ledger is not None:
            ledger.update(positions, persistent=True)
        return nll.float(), (torch.log(q).float() if rows else None)

    def summary(self):
        return {"cache_tokens": int(self.counts.sum() - self.counts.numel())}


register_mixer("unigram_cache", lambda ncfg, tokens, vocab_size, bos_id, record=False, device=None:
               UnigramCache(tokens, vocab_size))
