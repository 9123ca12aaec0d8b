"""The score lines of the log, written by one formatter in one field order (SPEC §5.4).

Every scoring protocol logs two lines: ``<label> val_loss:… val_bpb:…`` (4 decimals, for people) and its
``<label>_exact`` twin (8 decimals, what reviewers and :mod:`golflib.record.compliance` grep), both as::

    <label>[_exact] val_loss:<nats/token> val_bpb:<bits/byte> [<key>:<value> ...] eval_time:<ms>ms eval_mode:<mode>

The protocol's own fields (``stride:64``, ``eval_seq_len:2048``) come between the score and the timing; the label
is the records' (``final_int8_zlib_roundtrip``, ``final_int6_sliding_window``, ``legal_ttt``,
``quantized_ttt_phased``...) and ``eval_mode:`` names what was actually measured, because labels alone are not
trustworthy (SPEC §5.4 ⚠).
"""

from __future__ import annotations


def score_lines(label: str, res, fields: dict | None = None) -> list[str]:
    """``[line, exact_line]`` for an :class:`golflib.eval.bpb.EvalResult` ``res`` (``val_loss`` nats per token,
    ``val_bpb`` bits per byte, ``seconds`` wall-clock) under ``label``, with ``fields`` (``{key: value}``, in the
    given order) between the score and ``eval_time`` (milliseconds)."""
    extra = "".join(f" {k}:{v}" for k, v in (fields or {}).items())
    tail = f"{extra} eval_time:{1000 * res.seconds:.0f}ms eval_mode:{res.mode}"
    return [f"{label} val_loss:{res.val_loss:.4f} val_bpb:{res.val_bpb:.4f}{tail}",
            f"{label}_exact val_loss:{res.val_loss:.8f} val_bpb:{res.val_bpb:.8f}{tail}"]
