"""Records: what a competitor submits (SPEC §5).

bundle (single-file ``train_gpt.py`` from the training core, config baked in) · minify (AST minification and the
self-extracting compressed form, SPEC §3.B13) · seeds (multi-seed runner and per-seed table) · stats (record-bar
significance, SPEC §4.8 item 7) · compliance (budget, legality and log checks per seed) · submission
(``submission.json``, README) · folder (``records/track_10min_16mb/YYYY-MM-DD_<name>/``) · plots (per-seed figures).

Nothing here is part of the training core: :mod:`golflib.train` never imports this package.
"""
