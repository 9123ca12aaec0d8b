"""Optimizers and schedules: Muon, the Adam groups, warmdown and momentum warmup."""
