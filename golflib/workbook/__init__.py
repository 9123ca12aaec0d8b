"""Workbook-only code (never part of a submission): notebooks glue, launcher, plots, run readers, demo."""
