"""Run a record's own ``train_gpt.py`` on CPU and keep its numbers as a test fixture (issue 11).

    python tests/reference/harness.py PRESET --record /path/to/records/track_10min_16mb/<folder> [--out F]

What it does, for the adapter ``tests/reference/adapters/<PRESET>.py``:

1. resolves golflib's fixture config (``PRESET`` at ``adapter.SCALE`` with ``adapter.GOLF_OVERRIDES``) and builds
   golflib's GPT only to name and shape the fixture weights (:mod:`reference.weights`);
2. writes the synthetic dataset (:mod:`reference.synth`) and a patched copy of the record's script into a work
   folder: the CPU patches of :data:`SOURCE_PATCHES` plus the adapter's own, nothing else;
3. runs the record's ``main()`` in this process with ``adapter.record_env`` (the record's own defaults for every
   recipe field; only sizes, lengths and paths are set), FlashAttention replaced by PyTorch SDPA
   (:mod:`reference.fake_flash`), ``torch.compile`` by the identity, CUDA calls stubbed and the model kept in fp32;
   the record's GPT is given the fixture weights right after its own init (whose statistics are kept first);
4. writes ``fixtures/<PRESET>.json``: the init statistics, the training loss of every step (mean over the
   micro-batches, captured from the record's forward), each parameter's update after training
   (:func:`reference.weights.update_stats` on the record's saved weights, mapped back to golflib's names),
   the metrics the adapter parses from the record's log and the artifact's bytes.

No record code is copied into the repository: the fixture holds numbers and the record folder's name and hash.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/ (for `reference`)
sys.path.insert(0, str(HERE.parents[1]))  # the repository (golflib)

import torch  # noqa: E402
import torch._dynamo  # noqa: E402,F401  (imported before the patches: dynamo indexes torch functions once)

from reference import fake_flash  # noqa: E402
from reference.synth import write_dataset  # noqa: E402
from reference.weights import fixture_state, init_stats, update_stats  # noqa: E402

# Source substitutions that make a record's script run on a CPU-only torch build; each is (regex, replacement).
SOURCE_PATCHES = [
    (r"torch\.cuda\.is_available\(\)", "True"),
    (r"torch\.device\(\s*[\"']cuda[\"'][^)]*\)", 'torch.device("cpu")'),
    (r"device\s*=\s*[\"']cuda[\"']", 'device="cpu"'),
    (r"device_type\s*=\s*[\"']cuda[\"']", 'device_type="cpu"'),
    (r"\.to\(\s*[\"']cuda[\"']\s*\)", ""),
    (r"\bdist\.init_process_group\(", "(lambda *a, **k: None)("),
    (r"\[\s*[\"']nvidia-smi[\"']\s*\]", '["true"]'),
    # fused Adam on CPU rounds differently from the for-each kernel golflib uses off CUDA (same math)
    (r"fused\s*=\s*True", "fused=False"),
]


class _NoAutocast(contextlib.nullcontext):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def __call__(self, fn):  # used as a decorator
        return fn


def _identity_compile(fn=None, *args, **kwargs):
    if fn is None:  # @torch.compile(...) used with arguments
        return lambda f: f
    return fn


@contextlib.contextmanager
def cpu_patches():
    """Stub the CUDA-only calls records make, keep modules in fp32, disable autocast and compile."""
    saved = []

    def patch(obj, name, value):
        saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    noop = lambda *a, **k: None  # noqa: E731
    patch(torch, "compile", _identity_compile)
    patch(torch, "autocast", _NoAutocast)
    patch(torch.cuda, "synchronize", noop)
    patch(torch.cuda, "set_device", noop)
    patch(torch.cuda, "max_memory_allocated", lambda *a, **k: 0)
    patch(torch.cuda, "max_memory_reserved", lambda *a, **k: 0)
    patch(torch.cuda, "reset_peak_memory_stats", noop)
    patch(torch.cuda, "empty_cache", noop)
    patch(torch.cuda, "get_device_name", lambda *a, **k: "cpu (reference harness)")
    patch(torch.nn.Module, "bfloat16", lambda self: self)
    patch(torch.nn.Module, "cuda", lambda self, *a, **k: self)
    patch(torch.Tensor, "cuda", lambda self, *a, **k: self)
    patch(torch.Tensor, "pin_memory", lambda self, *a, **k: self)
    for fn in ("enable_flash_sdp", "enable_mem_efficient_sdp", "enable_math_sdp", "enable_cudnn_sdp"):
        patch(torch.backends.cuda, fn, noop)
    sys.modules["flash_attn_interface"] = fake_flash
    try:
        yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)
        sys.modules.pop("flash_attn_interface", None)


def fixture_config(preset: str, adapter, data: dict):
    from golflib.presets import resolve

    overrides = {**adapter.GOLF_OVERRIDES, "DATA_PATH": data["data_path"], "TOKENIZER_PATH": data["tokenizer_path"]}
    return resolve(preset, overrides, environ={}, scale=adapter.SCALE)


def size_patches(cfg) -> list[tuple[str, str]]:
    """Hard-coded sizes every record shares, scaled like golflib's ``--scale`` scales the config: the orthogonal
    init's ``shape[0] >= 64 and shape[1] >= 64`` (→ ``ORTHO_INIT_MIN_DIM``)."""
    m = cfg.model.ortho_init_min_dim
    return [(r"(shape\[0\]\s*>=\s*)64(\s*and\s*module\.weight\.shape\[1\]\s*>=\s*)64", rf"\g<1>{m}\g<2>{m}")]


def patched_source(src: str, adapter, cfg) -> str:
    """The CPU patches (may match nothing), then the size patches and the adapter's own, each of which must match."""
    for pat, rep in SOURCE_PATCHES:
        src = re.sub(pat, rep, src)
    own = getattr(adapter, "SOURCE_PATCHES", [])
    for pat, rep in size_patches(cfg) + list(own(cfg) if callable(own) else own):
        src, n = re.subn(pat, rep, src)
        if n == 0 and not (pat, rep) in size_patches(cfg):
            raise RuntimeError(f"adapter patch {pat!r} matches nothing in the record's script")
    return src


def run_record(preset: str, record_dir: Path, workdir: Path) -> dict:
    adapter = importlib.import_module(f"reference.adapters.{preset}")
    script = record_dir / getattr(adapter, "SCRIPT", "train_gpt.py")
    src = script.read_text(encoding="utf-8")
    if hasattr(adapter, "decode_source"):
        src = adapter.decode_source(src)
    data = write_dataset(workdir / "data")
    cfg = fixture_config(preset, adapter, data)

    from golflib.model.gpt import GPT

    golf_model = GPT(cfg.model)
    fixture = fixture_state(golf_model)
    run = workdir / "run"
    run.mkdir()
    path = run / "train_gpt.py"
    path.write_text(patched_source(src, adapter, cfg), encoding="utf-8")

    env = {k: str(v) for k, v in adapter.record_env(cfg, data).items()}
    env.setdefault("RUN_ID", "fixture")
    saved_env = dict(os.environ)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        os.environ.pop(k, None)
    os.environ.update(env)
    cwd = os.getcwd()
    os.chdir(run)
    losses: list[float] = []
    init: dict = {}
    try:
        with cpu_patches():
            spec = importlib.util.spec_from_file_location("record_train_gpt", path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules["record_train_gpt"] = mod
            spec.loader.exec_module(mod)
            if hasattr(adapter, "after_exec"):
                adapter.after_exec(mod)
            model_cls = getattr(mod, getattr(adapter, "MODEL_CLASS", "GPT"))
            orig_init, orig_forward = model_cls.__init__, model_cls.forward

            def init_with_fixture(self, *a, **k):
                orig_init(self, *a, **k)
                if not init:  # the first model built is the training model: keep its init statistics
                    golf_sd = adapter.from_record({n: t.detach() for n, t in self.state_dict().items()})
                    init.update({n: init_stats(t) for n, t in golf_sd.items()})
                with torch.no_grad():
                    self.load_state_dict(adapter.to_record(fixture, self), strict=True)

            def forward_capture(self, *a, **k):
                out = orig_forward(self, *a, **k)
                if self.training and torch.is_grad_enabled() and isinstance(out, torch.Tensor) and out.ndim == 0:
                    losses.append(float(out.detach()))
                return out

            model_cls.__init__, model_cls.forward = init_with_fixture, forward_capture
            torch.manual_seed(0)
            t0 = time.perf_counter()
            mod.main()
            seconds = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.modules.pop("record_train_gpt", None)

    log_text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((run / "logs").glob("*.txt"))) \
        if (run / "logs").is_dir() else ""
    log_text += adapter.extra_log(run) if hasattr(adapter, "extra_log") else ""
    accum, iters = adapter.ACCUM, cfg.train.iterations
    if len(losses) < accum * iters:
        raise RuntimeError(f"captured {len(losses)} training losses, expected >= {accum * iters}")
    train_loss = [sum(losses[s * accum:(s + 1) * accum]) / accum for s in range(iters)]
    final = adapter.from_record(adapter.load_final_weights(run))
    update = {n: update_stats(n, final[n].float(), fixture[n]) for n in fixture if n in final}
    missing = sorted(set(fixture) - set(final))
    metrics = {}
    for key, pat in adapter.METRICS.items():
        m = re.findall(pat, log_text)
        if not m:
            raise RuntimeError(f"metric {key}: pattern {pat!r} not found in the record's log")
        loss, bpb = m[-1]
        metrics[key] = {"val_loss": float(loss), "val_bpb": float(bpb)}
    art = re.findall(adapter.ARTIFACT_BYTES, log_text)
    code = len(path.read_bytes())  # what the record counts as its code (its pruning targets include it)
    return {
        "preset": preset,
        "record": adapter.RECORD,
        "record_sha256": hashlib.sha256(script.read_bytes()).hexdigest(),
        "torch": torch.__version__,
        "scale": adapter.SCALE,
        "golf_overrides": {**adapter.GOLF_OVERRIDES, "COUNTED_CODE_BYTES": code},
        "record_env": {k: v for k, v in env.items() if k not in ("DATA_PATH", "TOKENIZER_PATH", "DATA_DIR")},
        "seconds": round(seconds, 1),
        "init": init,
        "train_loss": train_loss,
        "update": update,
        "update_missing": missing,
        "metrics": metrics,
        "artifact_bytes": int(art[-1]) if art else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("preset")
    p.add_argument("--record", required=True, type=Path, help="the record folder holding train_gpt.py")
    p.add_argument("--out", type=Path, default=None, help="default: tests/reference/fixtures/<preset>.json")
    p.add_argument("--workdir", type=Path, default=None, help="keep the work folder here (default: a temp dir)")
    args = p.parse_args(argv)
    # one thread, as the test suite runs golflib (conftest): a reduction split over threads sums in another order,
    # and at these 4 steps that alone moves the record's loss by 6e-5
    torch.set_num_threads(1)
    work = args.workdir or Path(tempfile.mkdtemp(prefix=f"ref_{args.preset}_"))
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"{work}: not empty")
    work.mkdir(parents=True, exist_ok=True)
    try:
        out = run_record(args.preset, args.record, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    dest = args.out or HERE / "fixtures" / f"{args.preset}.json"
    dest.write_text(json.dumps(out, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {dest}: train_loss {out['train_loss']}, metrics {out['metrics']}, "
          f"artifact_bytes {out['artifact_bytes']}, {out['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
