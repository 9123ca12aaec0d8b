"""Illegal MODEL_CLASS: a GPT whose train() override never leaves training mode, and whose training-mode logits add
the mean over the sequence (the future included) — so the scoring pass, meant to run in eval mode, sees ahead."""
from golflib.model.gpt import GPT
from golflib.plugins import register_model_class


class AlwaysTraining(GPT):
    def train(self, mode=True):
        return super().train(True)

    def logits(self, input_ids, adapter=None, doc_ids=None, *args):
        z = super().logits(input_ids, adapter, doc_ids, *args)
        return z + 0.5 * z.mean(dim=-2, keepdim=True) if self.training else z


register_model_class("always_training", AlwaysTraining)
