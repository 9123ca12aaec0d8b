"""The groups of the typed run configuration, one module per concern; :mod:`golflib.config` assembles them into
:class:`golflib.config.Config` (import the groups from their modules: a bundled ``train_gpt.py`` is one namespace,
so names are not re-exported)."""
