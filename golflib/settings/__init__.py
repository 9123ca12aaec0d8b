"""The groups of the typed run configuration, one module per concern; :mod:`golflib.config` assembles them into
:class:`golflib.config.Config` (import the groups from their modules)."""
