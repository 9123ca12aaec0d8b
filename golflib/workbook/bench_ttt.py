"""``golf bench ttt``: evaluation throughput of each score-first TTT kind against plain sliding-window eval.

For the same model and the same val slice it times sliding-window eval (EVAL_SEQ_LEN / EVAL_STRIDE of the config)
and each TTT kind with the config's TTT settings (chunk sizes scaled so the slice has several chunks, as in
``golf audit --perturb``), and reports scored targets per second and the ratio TTT / sliding. With ``--run`` the
model is the run's artifact and the slice its val stream; otherwise a freshly initialised model of ``preset``
on the preset's val shards (or, if they are missing, a synthetic BOS-delimited random stream).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from golflib.config import Config
from golflib.data.bytecount import load_byte_counter
from golflib.data.loader import load_validation_tokens
from golflib.data.luts import ByteLUTs
from golflib.eval.sliding import eval_sliding
from golflib.eval.protocols import eval_window
from golflib.eval.ttt import run_ttt_kind
from golflib.eval.ttt_common import doc_segments
from golflib.model.gpt import GPT, count_params
from golflib.presets import resolve
from golflib.quant.export import load_artifact_model
from golflib.workbook.audit import slice_config
from golflib.workbook.bench import register
from golflib.workbook.runs import find_artifact


def _synthetic(n: int, vocab: int, seed: int = 0) -> tuple[torch.Tensor, ByteLUTs]:
    rng = np.random.default_rng(seed)
    toks = rng.integers(2, vocab, n + 1)
    toks[np.arange(0, n + 1, 200)] = 1  # a BOS every 200 tokens
    luts = ByteLUTs(torch.ones(vocab, dtype=torch.int16), torch.zeros(vocab, dtype=torch.bool),
                    torch.arange(vocab) < 2)
    return torch.from_numpy(toks.astype(np.int64)), luts


@register("ttt")
def bench_ttt(run_dir: str | None = None, preset: str = "cpu-tiny", val_tokens: int = 4096,
              kinds: tuple[str, ...] = ("chunked", "lora", "phased"), overrides: dict | None = None) -> dict[str, Any]:
    """Targets/s of sliding-window eval and of each TTT kind on ``val_tokens`` targets (see module docstring)."""
    if run_dir:
        cfg = Config.from_json_file(Path(run_dir) / "config.json").replace(overrides or {})
        model = load_artifact_model(find_artifact(run_dir))
        source = f"artifact of {run_dir}"
    else:
        cfg = resolve(preset, overrides or {}, environ={})
        torch.manual_seed(0)
        model = GPT(cfg.model)
        source = f"fresh {preset} model"
    L = eval_window(cfg)
    try:
        toks = load_validation_tokens(cfg.data.val_glob, L, cfg.model.vocab_size, val_tokens + 1)
        luts = load_byte_counter(cfg.data, cfg.model.vocab_size, cfg.model.bos_id)
        data = cfg.data.val_glob
    except (FileNotFoundError, ValueError):
        toks, luts = _synthetic(val_tokens, cfg.model.vocab_size)
        data = "synthetic (val shards not found)"
    n = toks.numel() - 1
    scfg = slice_config(cfg, n, len(doc_segments(toks, cfg.model.bos_id)))
    t0 = time.perf_counter()
    ref = eval_sliding(model, toks, luts, seq_len=L, stride=cfg.eval.eval_stride or L,
                       batch_seqs=cfg.eval.eval_batch_seqs)
    sliding_tps = n / (time.perf_counter() - t0)
    out: dict[str, Any] = {"source": source, "data": data, "params": count_params(model), "targets": n,
                           "seq_len": L, "stride": cfg.eval.eval_stride or L,
                           "sliding": {"tokens_per_second": sliding_tps, "val_bpb": ref.val_bpb}, "ttt": {}}
    for kind in kinds:
        t0 = time.perf_counter()
        res = run_ttt_kind(kind, copy.deepcopy(model), toks, luts, scfg)
        tps = n / (time.perf_counter() - t0)
        out["ttt"][kind] = {"tokens_per_second": tps, "ratio_to_sliding": tps / sliding_tps,
                            "slowdown_vs_sliding": sliding_tps / tps, "val_bpb": res.val_bpb,
                            "delta_bpb_vs_sliding": res.val_bpb - ref.val_bpb, "legal": res.ledger["legal"],
                            "settings": {k: v for k, v in res.details.items() if k not in ("curve", "phases")}}
    return out
