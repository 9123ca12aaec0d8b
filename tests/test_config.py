import json

import pytest

from golflib.config import Config, env_names
from golflib.settings.base import ConfigError
from golflib.presets import PRESETS, preset_overrides, resolve


def test_env_names_are_unique_and_challenge_named():
    names = env_names()
    assert len(names) == len(set(names))
    for official in ("VOCAB_SIZE", "NUM_LAYERS", "MODEL_DIM", "NUM_HEADS", "NUM_KV_HEADS", "MLP_MULT",
                     "TIE_EMBEDDINGS", "ROPE_BASE", "LOGIT_SOFTCAP", "QK_GAIN_INIT", "TIED_EMBED_INIT_STD",
                     "TIED_EMBED_LR", "MATRIX_LR", "SCALAR_LR", "EMBED_LR", "HEAD_LR", "MUON_MOMENTUM",
                     "MUON_BACKEND_STEPS", "MUON_MOMENTUM_WARMUP_START", "MUON_MOMENTUM_WARMUP_STEPS", "BETA1",
                     "BETA2", "ADAM_EPS", "GRAD_CLIP_NORM", "TRAIN_BATCH_TOKENS", "TRAIN_SEQ_LEN", "ITERATIONS",
                     "WARMDOWN_ITERS", "WARMUP_STEPS", "MAX_WALLCLOCK_SECONDS", "VAL_BATCH_SIZE", "VAL_LOSS_EVERY",
                     "TRAIN_LOG_EVERY", "DATA_PATH", "TOKENIZER_PATH", "RUN_ID", "SEED", "EVAL_STRIDE",
                     "EVAL_SEQ_LEN", "EVAL_BATCH_SEQS"):
        assert official in names, official


def test_defaults_are_the_official_baseline():
    c = Config()
    assert (c.model.num_layers, c.model.model_dim, c.model.num_heads, c.model.num_kv_heads) == (9, 512, 8, 4)
    assert c.train.train_batch_tokens == 524_288 and c.train.train_seq_len == 1024
    assert c.optim.warmdown_iters == 1200 and c.train.warmup_steps == 20
    assert c.optim.matrix_lr == 0.04 and c.optim.tied_embed_lr == 0.05 and c.optim.muon_momentum == 0.95


def test_env_parsing_by_type_and_precedence():
    env = {"NUM_LAYERS": "11", "MLP_MULT": "3", "TIE_EMBEDDINGS": "0", "MATRIX_LR": "0.02", "PATH": "/usr/bin",
           "RANK": "0"}
    c = resolve("baseline", {"MATRIX_LR": 0.03}, environ=env)
    assert c.model.num_layers == 11 and c.model.mlp_mult == 3.0 and c.model.tie_embeddings is False
    assert c.optim.matrix_lr == 0.03  # explicit override beats env
    assert c.quant.legacy_scale_floor is True  # from the baseline preset


def test_unknown_names_are_errors():
    with pytest.raises(ConfigError, match="NUM_LAYER .*did you mean NUM_LAYERS"):
        Config().with_env({"NUM_LAYER": "3"})
    with pytest.raises(ConfigError, match="TTT_LR_SCHEDULE"):  # a record's knob golflib does not implement
        Config().with_env({"TTT_LR_SCHEDULE": "cosine"})
    with pytest.raises(ConfigError, match="PHASED_TTT_PREFIX_DOC .*did you mean PHASED_TTT_PREFIX_DOCS"):
        Config().with_env({"PHASED_TTT_PREFIX_DOC": "10"})
    with pytest.raises(ConfigError, match="unknown config field 'num_layer'"):
        Config().replace({"num_layer": 3})
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        preset_overrides("nope")


@pytest.mark.parametrize("field,value,match", [
    ("MODEL_DIM", 500, "MODEL_DIM=500: must be divisible by NUM_HEADS=8"),
    ("NUM_KV_HEADS", 3, "NUM_KV_HEADS=3: must divide NUM_HEADS=8"),
    ("VOCAB_SIZE", 70000, r"VOCAB_SIZE=70000: must be in \[2, 65536\]"),
    ("TRAIN_BATCH_TOKENS", 1000, "TRAIN_BATCH_TOKENS=1000: must be a multiple of"),
    ("NUM_LAYERS", "nine", "NUM_LAYERS='nine': expected int"),
    ("TIE_EMBEDDINGS", "maybe", "TIE_EMBEDDINGS='maybe': expected bool"),
    ("DEVICE", "tpu", "DEVICE='tpu': must be auto, cpu or cuda"),
])
def test_validation_names_field_and_range(field, value, match):
    with pytest.raises(ConfigError, match=match):
        Config().replace({field: value})


def test_json_round_trip(tmp_path):
    c = resolve("cpu-tiny", {"SEED": 7}, environ={})
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"config": c.to_dict(), "meta": {"preset": "cpu-tiny"}}))
    assert Config.from_json_file(p) == c
    assert Config.from_dict(c.flat()) == c


def test_every_preset_resolves_and_is_documented():
    for name, fn in PRESETS.items():
        assert fn.__doc__ and len(fn.__doc__) > 40, name
        resolve(name, environ={})
