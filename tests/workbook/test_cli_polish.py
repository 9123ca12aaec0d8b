"""The CLI and notebooks as people use them (issue 17, part): `golf --version`, defaults in every `--help`, the presets
table, `golf eval`'s one-line summary, notebook parameters type-checked before anything runs, and notebooks that
write at the project root whether JupyterLab (kernel in notebooks/) or papermill (cwd = root) runs them."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from conftest import REPO
from golflib import __version__
from golflib.cli import build_parser, main as golf
from golflib.presets import PRESETS, RECORDS
from golflib.workbook.notebook import ParamError, run_notebook
from golflib.workbook.paths import enter_project_root, project_root
from golflib.workbook.presets_cli import param_count, presets_table
from golflib.workbook.resultfile import load_run_result


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        golf(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"golf (golflib) {__version__}"


def _parsers(p: argparse.ArgumentParser, path=("golf",)):
    yield path, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, child in a.choices.items():
                yield from _parsers(child, path + (name,))


def test_every_option_has_help_and_shows_its_default():
    """Every option of every sub-command prints its default in --help (argparse's ArgumentDefaultsHelpFormatter;
    options without help text get one)."""
    missing = []
    for path, p in _parsers(build_parser()):
        text = " ".join(p.format_help().split())  # unwrap
        for a in p._actions:
            if not a.option_strings or a.default is argparse.SUPPRESS:
                continue
            if not a.help or f"(default: {a.default})" not in text:
                missing.append((" ".join(path), a.option_strings[0]))
    assert not missing, missing
    train = dict(_parsers(build_parser()))[("golf", "train")].format_help()
    assert re.search(r"--nproc NPROC\s+\(default: 1\)", train) and "(default: runs)" in train


def test_presets_table_matches_the_models(capsys):
    rows = presets_table()
    assert [r["preset"] for r in rows] == sorted(PRESETS) and len(rows) == 11
    by = {r["preset"]: r for r in rows}
    # README's exact parameter counts; published bpbs as RECORDS
    assert by["baseline"]["params"] == 17_059_912 and by["pr1855"]["params"] == 35_945_671
    assert by["pr1394"]["vocab"] == 8192 and by["baseline"]["published_bpb"] == 1.2244
    assert all(r["published_bpb"] == RECORDS[r["preset"]][1] for r in rows)
    assert golf(["presets"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["preset", "record", "params", "published", "val_bpb", "vocab"]
    assert any(line.split()[0] == "pr549" and "26,928,220" in line and "1.1194" in line for line in out)
    assert golf(["presets", "pr549"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("pr549: #549, published val_bpb 1.1194\nparameters: 26,928,220")
    assert re.search(r"^MLP_ACTIVATION\s+relu_sq\s+leaky_relu_sq$", text, re.M)
    assert golf(["presets", "--json"]) == 0 and json.loads(capsys.readouterr().out) == rows


def test_param_count_is_the_built_models():
    from golflib.model.gpt import GPT
    from golflib.presets import resolve

    cfg = resolve("cpu-tiny", environ={})
    assert param_count(cfg) == sum(p.numel() for p in GPT(cfg.model).parameters())


def test_golf_eval_prints_one_line_per_protocol(quant_run, capsys):
    res = load_run_result(quant_run)
    artifact = quant_run / res.artifacts["mixed"].path
    assert golf(["eval", str(artifact), "--stride", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(str(artifact)) and lines[1].split()[:2] == ["protocol", "val_bpb"]
    row = next(line for line in lines if line.startswith("standard"))
    assert float(row.split()[1]) == pytest.approx(res.score("mixed/standard").val_bpb, abs=1e-6)
    assert not any(line.startswith("sliding") for line in lines)
    assert golf(["eval", str(artifact), "--stride", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["standard"]["val_bpb"] == pytest.approx(float(row.split()[1]),
                                                                                      abs=1e-6)


def test_wrong_typed_notebook_parameter_fails_before_a_run_dir_exists(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(ParamError, match=r"10_train.ipynb: notebook parameter nproc='two': expected int, got str "
                                         r"\(the parameters cell's default is 1\)"):
        run_notebook(REPO / "notebooks" / "10_train.ipynb", {"nproc": "two"}, runs_root=runs)
    with pytest.raises(ParamError, match="max_wallclock_seconds=True"):
        run_notebook(REPO / "notebooks" / "10_train.ipynb", {"max_wallclock_seconds": True}, runs_root=runs)
    assert not runs.exists()


def test_notebooks_enter_the_project_root(tmp_path, monkeypatch):
    root = tmp_path / "checkout"
    for d in ("golflib", "notebooks"):
        (root / d).mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    monkeypatch.chdir(root / "notebooks")  # where JupyterLab starts a notebook's kernel
    assert project_root() == root.resolve() and enter_project_root() == root.resolve()
    assert Path.cwd() == root.resolve()
    monkeypatch.chdir(tmp_path)  # not a checkout: nothing changes
    assert project_root() is None and enter_project_root() == tmp_path.resolve()
    assert project_root(REPO / "notebooks") == REPO.resolve()
    import nbformat

    for nb_path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(str(nb_path), as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
        assert first.source.startswith("from golflib.workbook.paths import enter_project_root\nenter_project_root()"), \
            nb_path.name


def test_make_lab_is_rooted_at_the_repository_and_takes_arguments():
    make = (REPO / "Makefile").read_text()
    lab = make[make.index("\nlab: setup"):].split("\n\n")[0]
    assert "--ServerApp.root_dir=." in lab and "--LabApp.default_url=/lab/tree/notebooks" in lab
    assert "$(ARGS)" in lab and "$(LAB_ROOT_FLAG)" in make and "--allow-root" in make
    assert "nbstripout --install" in make
    assert (REPO / ".gitattributes").read_text().splitlines()[0] == "*.ipynb filter=nbstripout"
    toml = (REPO / "pyproject.toml").read_text()
    lab_extra = next(line for line in toml.splitlines() if line.startswith("lab = "))
    assert "ipywidgets" in lab_extra and "nbstripout" in lab_extra


def test_scores_figure_shows_a_5_millibit_difference(tmp_path):
    """The issue's numbers (1.6616 / 1.6465 / 1.6410 looked identical next to the unigram bar): plotted as Δ against
    pre-quant, a 0.005-bpb difference spans over a tenth of the axis; the unigram is named in the title; the scored
    metric is bold; PNG (200 dpi) and SVG are written."""
    import matplotlib

    matplotlib.use("Agg")
    from golflib.workbook.plots import plot_scores, zoom_limits

    scores = {"unigram (reference)": 3.4121, "pre-quant": 1.6616, "int8 round trip": 1.6665,
              "int8 sliding window": 1.6465, "int8 + doc-LoRA TTT": 1.6410}
    fig = plot_scores(scores, reference="pre-quant", scored="int8 + doc-LoRA TTT", save_to=[tmp_path])
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    widths = {b.get_y(): b.get_width() for b in ax.patches}
    assert sorted(round(w, 4) for w in widths.values()) == [-0.0206, -0.0151, 0.0, 0.0049]
    assert 0.005 / (hi - lo) > 0.1 and lo < -0.0206 and hi > 0.0049
    assert "unigram (reference) 3.4121" in ax.get_title() and "Δ val_bpb vs pre-quant = 1.6616" in ax.get_xlabel()
    bold = [t.get_text() for t in ax.get_yticklabels() if t.get_fontweight() == "bold"]
    assert bold == ["int8 + doc-LoRA TTT"]
    assert [p.rsplit("/", 1)[1] for p in fig.saved_paths] == ["scores.png", "scores.svg"]
    from PIL import Image

    assert Image.open(tmp_path / "scores.png").info["dpi"][0] == pytest.approx(200, abs=1)
    # the training curve's val axis zooms on the second half of training
    assert zoom_limits([4.0, 2.5, 1.9, 1.7, 1.65, 1.62]) == pytest.approx((1.62 - 0.012, 1.7 + 0.012))


def test_seed_scores_figure_states_n_and_no_spread_for_one_seed():
    """One seed printed "± 0.00000"; the legend now says n, and a single seed says it has no spread."""
    import matplotlib

    matplotlib.use("Agg")
    from golflib.record.plots import plot_seed_scores

    rows = [{"seed": 1337, "val_bpb": 1.68757, "eval_mode": "ttt/lora"}]
    fig = plot_seed_scores(rows, {"val_bpb": 1.68757, "val_bpb_std": 0.0})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "1.68757 (n=1 seed: no spread measured)" in labels and not any("±" in t for t in labels)
    rows = rows + [{"seed": 42, "val_bpb": 1.68957, "eval_mode": "ttt/lora"}]
    fig = plot_seed_scores(rows, {"val_bpb": 1.68857, "val_bpb_std": 0.001414})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "mean 1.68857 ± 0.00141 (std over n=2 seeds)" in labels


def test_summary_frame_keeps_every_entry_with_its_precision():
    from golflib.workbook.training import summary_frame

    df = summary_frame({"val_bpb_pre_quant": 1.658312345, "bytes_total": 363696, "ttt_lora_legal": True,
                        "mixed_scheme": "int6e8+entropy", "record_refused": None})
    assert list(df.index) == ["val_bpb_pre_quant", "bytes_total", "ttt_lora_legal", "mixed_scheme", "record_refused"]
    assert list(df["value"]) == ["1.65831", "363,696", "True", "int6e8+entropy", "None"]


def test_notebook_tables_are_dataframes_not_padded_prints():
    """Tables in the notebooks are DataFrames (issue 17): no code cell pads columns with f-string width specs."""
    import nbformat

    padded = re.compile(r"print\(f\".*\{[^}]*:[<>]?\d+[sd,.]")
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                bad = [ln for ln in cell.source.splitlines() if padded.search(ln)]
                assert not bad, (path.name, bad)
