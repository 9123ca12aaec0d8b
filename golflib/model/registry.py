"""Model classes by name (``MODEL_CLASS``): golflib's :class:`~golflib.model.gpt.GPT` and the classes plugins register.

A competitor's own architecture enters golflib as a subclass of :class:`~golflib.model.gpt.GPT` (or any
``nn.Module`` with its constructor ``cls(model_cfg)``, ``logits``, ``token_nll`` and ``forward``) registered by a
plugin (``EVAL_PLUGINS``, :mod:`golflib.plugins`): training builds it, the artifact loads into it, and the
perturbation audit (:mod:`golflib.workbook.audit`) re-runs scoring with it — the same class that produced the score.
"""

from __future__ import annotations

from golflib.model.gpt import GPT

MODEL_CLASSES: dict[str, type] = {"gpt": GPT}


def register_model_class(name: str, cls: type) -> type:
    """Register ``cls`` under ``name`` (the value of ``MODEL_CLASS``); returns ``cls`` (usable as a decorator
    factory's target). Re-registering a name replaces it. Raises ``ValueError`` for ``gpt`` (golflib's own) or a
    name that is not an identifier, ``TypeError`` for a non-class."""
    if not isinstance(cls, type):
        raise TypeError(f"register_model_class({name!r}): expected a class, got {type(cls).__name__}")
    if name == "gpt" or not name.replace(".", "_").isidentifier():
        raise ValueError(f"register_model_class: name {name!r} must be an identifier other than 'gpt'")
    MODEL_CLASSES[name] = cls
    return cls


def model_class(name: str) -> type:
    """The class registered as ``name``; raises ``ValueError`` naming ``MODEL_CLASS`` and the registered names."""
    if name not in MODEL_CLASSES:
        raise ValueError(f"MODEL_CLASS={name!r} is not registered (registered: {', '.join(MODEL_CLASSES)}); a plugin "
                         f"registers it with golflib.model.registry.register_model_class (set EVAL_PLUGINS)")
    return MODEL_CLASSES[name]


def build_model(model_cfg):
    """A fresh model of class ``model_cfg.model_class`` built from ``model_cfg`` (a
    :class:`golflib.settings.model.ModelConfig`)."""
    return model_class(model_cfg.model_class)(model_cfg)
