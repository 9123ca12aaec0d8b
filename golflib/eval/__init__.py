"""Evaluation: exact val_bpb, standard and sliding-window protocols."""
