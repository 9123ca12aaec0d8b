"""The mixed-precision export at the end of a training run (``MIXED_EXPORT=1``), called from ``golflib.train``.

Order (SPEC §3.B5, trap 8): the training loop stops :func:`reserve_ms` earlier when GPTQ calibrates on training
data; right after training, the Hessians are collected on ``GPTQ_CALIBRATION_BATCHES`` training micro-batches
(or on AR self-generated sequences, #1019) and the log states the training-clock time at which the last training
data was read, against the cap. Then GPTQ + SDClip (+ LQER, pruning) → artifact with ``MIXED_CODEC`` → reloaded
**from disk** into a fresh model → standard val_bpb. :func:`mixed_export` returns the ``result.json`` section and
the reloaded model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from golflib.config import Config
from golflib.eval.scorelog import score_lines
from golflib.quant.budget import artifact_budget
from golflib.quant.calib import add_damping, ar_calibration_inputs, collect_hessians, train_batches
from golflib.quant.export import export_mixed, load_artifact_model
from golflib.quant.mixed import scheme_tag
from golflib.quant.reserve import reserve_ms


def calibration_loader(cfg: Config, new_loader: Callable, device: torch.device, distributed: bool):
    """The loader GPTQ calibrates on (``GPTQ_CALIB_LOADER``): ``train`` — a fresh training loader from
    ``new_loader()`` (restarted at the stream start); ``shuffled`` — a fresh ``ShuffledSequenceLoader`` of this
    rank (#1855 calibrates on it whatever it trains on; its draws depend on the rank only)."""
    if cfg.quant.gptq_calib_loader == "train":
        return new_loader()
    import torch.distributed as dist

    from golflib.data.loaders import make_loader

    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    return make_loader("shuffled", cfg.data.train_glob, rank, world, device, cfg.model.vocab_size,
                       bos_id=cfg.model.bos_id)


def calibrate(cfg: Config, model: torch.nn.Module, *, new_loader: Callable, accum: int, device: torch.device,
              distributed: bool, train_ms: float, autocast_ctx=None, log: Callable[[str], None] = print) -> \
        tuple[dict, dict]:
    """Hessians for GPTQ per ``GPTQ_CALIBRATION`` (``train`` | ``ar``); returns ``(hessians, stats)``.

    ``stats`` has ``source``, ``batches``, ``tokens``, ``seconds`` and, for train data, ``train_data_last_read_ms``
    (training-clock ms when the last calibration batch was read: ``train_ms`` + calibration time) and
    ``within_budget`` (against ``MAX_WALLCLOCK_SECONDS``; None when uncapped)."""
    q, tc = cfg.quant, cfg.train
    gen_s = 0.0
    if q.gptq_calibration == "train":
        batches = train_batches(calibration_loader(cfg, new_loader, device, distributed), q.gptq_calibration_batches,
                                tc.train_batch_tokens, tc.train_seq_len, accum, doc_ids=not q.gptq_calib_dense)
    else:
        t0 = time.perf_counter()
        batches = ar_calibration_inputs(model, q.gptq_ar_seqs, tc.train_seq_len, temperature=q.gptq_ar_temperature,
                                        seed=tc.seed, device=device)
        gen_s = time.perf_counter() - t0
    hessians, stats = collect_hessians(model, batches, distributed=distributed and q.gptq_hessian_allreduce,
                                       autocast_ctx=autocast_ctx, head=q.embed_gptq,
                                       total=q.gptq_calibration_batches if q.gptq_calibration == "train" else None)
    hessians = {n: add_damping(h, q.gptq_hessian_damp) for n, h in hessians.items()}
    stats["source"] = q.gptq_calibration
    stats["hessians"] = "all-reduced" if distributed and q.gptq_hessian_allreduce else "rank-local"
    if q.gptq_calibration == "train":
        last = train_ms + 1000.0 * stats["seconds"]
        cap = 1000.0 * tc.max_wallclock_seconds if tc.max_wallclock_seconds > 0 else None
        stats["train_data_last_read_ms"] = last
        stats["within_budget"] = None if cap is None else last <= cap
        log(f"gptq:calibration source:train batches:{stats['batches']} tokens:{stats['tokens']} "
            f"seconds:{stats['seconds']:.2f} train_data_last_read_ms:{last:.0f} "
            f"cap_ms:{'none' if cap is None else f'{cap:.0f}'} reserve_ms:{reserve_ms(cfg):.0f} "
            f"within_budget:{stats['within_budget']}")
    else:
        stats["generate_seconds"] = gen_s
        log(f"gptq:calibration source:ar seqs:{cfg.quant.gptq_ar_seqs} tokens:{stats['tokens']} "
            f"temperature:{q.gptq_ar_temperature} generate_seconds:{gen_s:.2f} seconds:{stats['seconds']:.2f} "
            f"(no train/val data read)")
    return hessians, stats


@dataclass(frozen=True)
class ExportContext:
    """What the export needs from the training run: ``master`` (rank 0 writes the artifact), ``distributed``,
    ``device``, ``new_loader()`` (a fresh train loader, for calibration on train data), ``accum`` (micro-batches per
    rank and step), ``evaluate(model) -> EvalResult`` (the standard eval on val), ``prepare_model(model)`` (casts a
    reloaded model for the device), ``barrier()`` (synchronizes ranks), ``autocast_ctx()`` (the forward's autocast
    context, or None) and ``log(line)``."""

    master: bool
    distributed: bool
    device: torch.device
    new_loader: Callable
    accum: int
    evaluate: Callable[[torch.nn.Module], object]
    prepare_model: Callable[[torch.nn.Module], None]
    barrier: Callable[[], None]
    autocast_ctx: Callable | None = None
    log: Callable[[str], None] = print


def mixed_export(cfg: Config, model: torch.nn.Module, run_dir: Path, ectx: ExportContext, *, train_ms: float,
                 code_bytes: int) -> tuple[dict, torch.nn.Module] | tuple[None, None]:
    """Run the mixed export of a trained ``model`` (module docstring) in ``ectx`` (:class:`ExportContext`);
    ``(None, None)`` when ``MIXED_EXPORT=0``. ``train_ms``: the training clock at the end of the loop (ms);
    ``code_bytes``: the counted code, for the byte totals.

    Every rank calibrates (Hessians all-reduced, or rank-local with ``GPTQ_HESSIAN_ALLREDUCE=0`` as #1855: rank
    0's then decide the codes); rank 0 writes the artifact; every rank reloads it and evaluates. Returns the
    ``result.json`` section and the model reloaded from the artifact (the one the other protocols score when the
    mixed artifact is the submission)."""
    master, distributed, device, log = ectx.master, ectx.distributed, ectx.device, ectx.log
    q = cfg.quant
    if not q.mixed_export:
        return None, None
    out: dict = {}
    hessians = None
    if q.gptq_enabled:
        hessians, out["calibration"] = calibrate(cfg, model, new_loader=ectx.new_loader, accum=ectx.accum,
                                                 device=device, distributed=distributed, train_ms=train_ms,
                                                 autocast_ctx=ectx.autocast_ctx, log=log)
    tag = f"{scheme_tag(q)}_{q.mixed_codec}"
    path = Path(run_dir) / f"final_model.{tag}.golf"
    if master:
        info, extras = export_mixed(model.state_dict(), path, q, cfg.model, hessians, code_bytes=code_bytes,
                                    log=log)
        budget = artifact_budget(path.read_bytes(), str(path))
        out.update(extras)
        out.update({"path": path.name, "scheme": info.scheme, "tag": scheme_tag(q), "codec": info.codec,
                    "artifact_bytes": info.artifact_bytes, "payload_bytes": info.payload_bytes,
                    "bytes_total": info.artifact_bytes + code_bytes,
                    "under_limit": info.artifact_bytes + code_bytes < 16_000_000,
                    "classes": {c: v["bytes"] for c, v in budget["classes"].items()},
                    "header_bytes": budget["header_bytes"]})
        log(f"Serialized model {tag}: {info.artifact_bytes} bytes (payload:{info.payload_bytes})")
        log(f"Total submission size {tag}: {info.artifact_bytes + code_bytes} bytes (limit 16000000)")
    ectx.barrier()
    q_model = load_artifact_model(path, cfg.model, device)
    ectx.prepare_model(q_model)
    res = ectx.evaluate(q_model)
    for line in score_lines(f"final_{tag}_roundtrip", res):
        log(line)
    out["standard"] = res.to_dict()
    return out, q_model
