"""The official naive baseline (root train_gpt.py = records/track_10min_16mb/2026-03-17_NaiveBaseline)."""

from reference.adapters.common import ACCUM, RUN, SCALE, load_torch_state, size_env  # noqa: F401

RECORD = "records/track_10min_16mb/2026-03-17_NaiveBaseline"
GOLF_OVERRIDES = {**RUN, "EVAL_STRIDE": 0}


def record_env(cfg, data):
    return {**size_env(cfg, data), "MLP_MULT": int(cfg.model.mlp_mult)}


def to_record(sd, model):
    return dict(sd)  # the baseline's names are golflib's


def from_record(sd):
    return dict(sd)


def load_final_weights(run):
    return load_torch_state(run / "final_model.pt")


METRICS = {
    "pre_quant": r"step:\d+/\d+ val_loss:([0-9.]+) val_bpb:([0-9.]+)",
    "roundtrip": r"final_int8_zlib_roundtrip_exact val_loss:([0-9.]+) val_bpb:([0-9.]+)",
}
ARTIFACT_BYTES = r"Serialized model int8\+zlib: (\d+) bytes"


def SOURCE_PATCHES(cfg):  # noqa: N802 - the harness's hook name
    # the export keeps float tensors of <= 65,536 elements as fp16: scaled like golflib's --scale scales
    # KEEP_FLOAT_MAX_NUMEL (x 0.125², 1,024), so the block matrices are int8 here as at full size
    return [(r"INT8_KEEP_FLOAT_MAX_NUMEL = 65_536", f"INT8_KEEP_FLOAT_MAX_NUMEL = {cfg.quant.keep_float_max_numel}")]
