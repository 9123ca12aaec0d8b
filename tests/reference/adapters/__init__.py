"""One module per preset: how the reference harness runs that preset's record (see ``reference.harness``).

An adapter defines ``RECORD`` (the record folder), ``SCALE`` and ``GOLF_OVERRIDES`` (golflib's fixture config:
preset → scale → these; sizes, lengths, paths, and the fields ``--scale`` changes restored to the record's values),
``record_env(cfg, data)`` (the record's env vars: the same sizes in the record's names, every recipe field left at
the record's own default), ``ACCUM`` (the record's micro-batches per step), ``to_record(golf_sd, model)`` /
``from_record(sd)`` (parameter names and banks), ``load_final_weights(run_dir)``, ``METRICS`` (name → regex with
val_loss and val_bpb groups on the record's log), ``ARTIFACT_BYTES`` (regex), optionally ``SOURCE_PATCHES``,
``SCRIPT``, ``decode_source(src)``, ``after_exec(module)`` and ``MODEL_CLASS``.
"""
