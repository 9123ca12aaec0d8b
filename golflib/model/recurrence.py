"""Depth recurrence: which physical layer runs at each virtual layer (SPEC §3.C14).

Three forms, as in the records:

* ``NUM_LOOPS`` (#1394, #1412, #1855): ``idx = [0..s-1] + [s..e] * (NUM_LOOPS + 1) + [e+1..L-1]`` with
  ``s = LOOP_START``, ``e = LOOP_END``; with ``k`` loops active only ``k`` extra passes are made (progressive
  recurrence, #1412). L=11, s=3, e=5, 2 loops → 17 virtual layers, encoder ``[0,1,2,3,4,5,3,4]``, decoder
  ``[5,3,4,5,6,7,8,9,10]``.
* ``RECUR_LAYERS`` (#1204, #1487): one extra pass over the listed layers inserted after ``max(RECUR_LAYERS)``:
  ``[0..c-1] + RECUR_LAYERS + [c..L-1]``, ``c = max + 1`` (#1487: 3,4,5 → 14 virtual layers).
* shared cores (``UNIQUE_LAYERS``, #461): all ``L`` logical layers always run; layer ``i`` uses the attention/MLP
  weights of core ``i % UNIQUE_LAYERS`` (its norms/scales stay its own). Handled by the model, not by this list.

The first half of the virtual list (``len // 2``) is the U-Net encoder, the rest the decoder.
"""

from __future__ import annotations

from golflib.settings.model import ModelConfig


def max_loops(cfg: ModelConfig) -> int:
    """Number of loop phases the config can activate (0 = no recurrence)."""
    if cfg.num_loops:
        return cfg.num_loops
    return 1 if cfg.recur_layers else 0


def virtual_layers(cfg: ModelConfig, active_loops: int | None = None) -> list[int]:
    """Physical layer index of each virtual layer with ``active_loops`` loop passes on (default: all)."""
    L = cfg.num_layers
    k = max_loops(cfg) if active_loops is None else max(0, min(active_loops, max_loops(cfg)))
    if cfg.num_loops:
        s, e = cfg.loop_start, cfg.loop_end
        seg = list(range(s, e + 1))
        return list(range(s)) + seg * (k + 1) + list(range(e + 1, L))
    if cfg.recur_layers and k:
        c = max(cfg.recur_layers) + 1
        return list(range(c)) + list(cfg.recur_layers) + list(range(c, L))
    return list(range(L))


def encoder_decoder(layers: list[int]) -> tuple[list[int], list[int]]:
    """Split a virtual list into the U-Net halves ``(encoder, decoder)``; the encoder is the shorter half."""
    n_enc = len(layers) // 2
    return layers[:n_enc], layers[n_enc:]


def num_skip_weights(cfg: ModelConfig) -> int:
    """U-Net skip slots: ``min(len(enc), len(dec))`` of the fully looped virtual list (``SKIP_SIZING=virtual``,
    #1394/#1855) or of the physical stack (``physical``, #1487)."""
    layers = virtual_layers(cfg) if cfg.skip_sizing == "virtual" else list(range(cfg.num_layers))
    enc, dec = encoder_decoder(layers)
    return min(len(enc), len(dec))
