"""golflib: a notebook-driven research workbook for OpenAI's Parameter Golf challenge.

Subpackages follow the flow text → tokenizer + shards (``data``) → model (``model``, ``optim``) → training
(``train``) → quantize + compress (``quant``) → score (``eval``) → runs, figures, notebooks (``workbook``).
"""

__version__ = "0.1.0"
