"""Legal MODEL_CLASS: golflib's GPT whose logits are scaled by a constant 1.05 (trained and scored that way)."""
from golflib.model.gpt import GPT
from golflib.plugins import register_model_class


class ScaledGPT(GPT):
    def logits(self, input_ids, adapter=None, doc_ids=None, *args):
        return super().logits(input_ids, adapter, doc_ids, *args) * 1.05


register_model_class("scaled_gpt", ScaledGPT)
