"""Model classes by name (``MODEL_CLASS``): golflib's :class:`~golflib.model.gpt.GPT` and the classes plugins
register (:func:`golflib.plugins.register_model_class`). Training builds the class, the artifact loads into it and
the perturbation audit (:mod:`golflib.workbook.audit`) re-runs scoring with it — the class that produced the score.
"""

from __future__ import annotations

import torch

from golflib.model.gpt import GPT
from golflib.settings.base import ConfigError

MODEL_CLASSES: dict[str, type] = {"gpt": GPT}


def build_model(model_cfg):
    """A fresh model of class ``model_cfg.model_class`` built from ``model_cfg`` (a
    :class:`golflib.settings.model.ModelConfig`). Raises ``ConfigError`` (a ``ValueError``) naming ``MODEL_CLASS``
    and the registered names for a class no plugin registered."""
    cls = MODEL_CLASSES.get(model_cfg.model_class)
    if cls is None:
        raise ConfigError(f"MODEL_CLASS={model_cfg.model_class!r} is not registered ({', '.join(MODEL_CLASSES)}); a "
                         f"plugin registers it with golflib.plugins.register_model_class (EVAL_PLUGINS)")
    return cls(model_cfg)


def meta_model(model_cfg):
    """:func:`build_model` on PyTorch's ``meta`` device: every parameter's shape and the parameter count, no memory
    (the artifact loader's size check, ``golf presets``)."""
    with torch.device("meta"):
        return build_model(model_cfg)
