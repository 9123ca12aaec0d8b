"""Optimizers and schedules: Muon, the Adam groups, warmdown and momentum warmup."""

from golflib._facade import lazy_exports

# the facade: each public name is imported from its module on first use (golflib._facade)
__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "averaging": ("EMA", "SWA", "Averager"),
    "build": ("build_optimizers",),
    "muon": ("Muon", "zeropower_via_newtonschulz5"),
    "schedule": ("lr_multiplier", "muon_momentum", "wd_multiplier", "training_fraction"),
})
