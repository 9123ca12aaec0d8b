"""JupyterLab as shipped, driven by a real browser (issue 17): `make lab`'s server, a notebook run from the UI.

Before issue 17 JupyterLab started each kernel in the notebook's folder, so a notebook run from lab wrote ``data/``,
``runs/`` and ``figures/`` under ``notebooks/`` while ``golf run`` (papermill, cwd = the project root) wrote them at
the root. The fix roots lab at the repository (the Makefile's ``lab`` target: ``--ServerApp.root_dir=.
--LabApp.default_url=/lab/tree/notebooks``) and every notebook's first code cell calls
:func:`golflib.workbook.paths.enter_project_root`. The unit tests check that function; this test checks what a person
sees: a throwaway project root (``pyproject.toml`` and ``notebooks/`` copied, ``golflib`` linked), JupyterLab started
with the flags read from the Makefile's ``lab`` recipe, Debian's Chromium (playwright) opening ``00_data.ipynb`` and
running all its cells. Then:

* the doc-length histogram is in the page (a PNG in an output area) and no output shows a traceback, an error or
  tqdm's "IProgress not found" warning (ipywidgets is in the ``lab`` extra, so progress bars render as widgets);
* the export landed at the project root (``data/manifest.json``, ``figures/00_data/doc_token_lengths.png``);
* nothing was written under ``notebooks/``: every file's SHA-256 is the same before and after (document autosave is
  off for the test, so lab itself saves nothing either).

Screenshots of the page go to ``tmp_path`` and, when ``GOLF_BROWSER_SHOTS`` names a folder, there too. Without
Chromium (``make system-deps``) or the ``playwright`` package (``dev`` extra) the test is skipped, except under
``CI=true``, where it fails: CI must never skip it silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO

NOTEBOOK = "00_data.ipynb"
TOKEN = "golf-browser-test-token"
SERVER_START_S = 90  # server answers /api/status
RUN_ALL_S = 300  # every cell of 00_data executed (5-6 s on 2 cores, the corpus export included)
UI_S = 60  # lab's shell, the notebook panel, an idle kernel
IN_CI = os.environ.get("CI") == "true"
STDERR = '.jp-Notebook .jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]'  # stderr and errors


def _missing(reason: str):
    """Skip for a developer without the browser dependencies; fail in CI, which must always run this test."""
    if IN_CI:
        pytest.fail(f"CI=true: {reason} (CI must run the browser test; see .ci/run)")
    pytest.skip(reason)


@pytest.fixture()
def chromium() -> str:
    """Debian's Chromium and the playwright package, or a skip (a failure under CI=true)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright package is missing: `.venv/bin/pip install -e '.[dev]'`")
    for cand in ("/usr/bin/chromium", shutil.which("chromium")):
        if cand and os.access(cand, os.X_OK):
            return cand
    _missing("Chromium not found (/usr/bin/chromium): `make system-deps` installs Debian's package")


def lab_flags(makefile: Path = REPO / "Makefile") -> list[str]:
    """The ``jupyter lab`` flags of the Makefile's ``lab`` recipe, with ``$(LAB_ROOT_FLAG)`` resolved for this
    user and ``$(ARGS)`` (the caller's extras) empty; any other make variable there is an error, so a changed recipe
    breaks this test instead of leaving it testing something else."""
    text = makefile.read_text()
    recipe = re.search(r"^lab:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
    assert recipe, "Makefile has no `lab:` target"
    (line,) = [ln for ln in recipe.group(1).splitlines() if re.search(r"/jupyter lab\b", ln)]
    root_flag = re.search(r"^LAB_ROOT_FLAG\s*:?=\s*(.*)$", text, re.M)
    assert root_flag and "--allow-root" in root_flag.group(1) and "id -u" in root_flag.group(1), root_flag
    subst = {"$(LAB_ROOT_FLAG)": "--allow-root" if os.getuid() == 0 else "", "$(ARGS)": ""}
    flags = []
    for tok in shlex.split(line.split("jupyter lab", 1)[1]):
        tok = subst.get(tok, tok)
        assert "$" not in tok, f"unexpected make variable in the lab recipe: {tok}"
        if tok:
            flags.append(tok)
    return flags


def test_lab_flags_from_the_makefile():
    flags = lab_flags()
    assert "--ServerApp.root_dir=." in flags and "--LabApp.default_url=/lab/tree/notebooks" in flags
    assert ("--allow-root" in flags) == (os.getuid() == 0)


def tree_digest(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (folders show up through their files, empty ones as
    ``path/``, links as ``-> target``)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir() and not any(p.iterdir()):
            out[rel + "/"] = ""
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0):
    req = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def _request(url: str, method: str) -> None:
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {TOKEN}"})
    urllib.request.urlopen(req, timeout=10).close()


@pytest.fixture()
def project(tmp_path) -> Path:
    """A throwaway project root: ``pyproject.toml`` and ``notebooks/`` copied, ``golflib`` linked to the package."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(REPO / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "data", "runs", "figures"))
    (root / "golflib").symlink_to(REPO / "golflib", target_is_directory=True)
    return root


@pytest.fixture()
def lab(project, tmp_path):
    """JupyterLab started as `make lab` starts it (cwd = the project root), headless on a free port with a fixed
    token; config, runtime, data, settings and workspaces in ``tmp_path`` (nothing in $HOME), autosave off. Yields
    the base URL; the finaliser shuts down its kernels, then the server, then anything left of its process tree."""
    import psutil  # an ipykernel dependency
    jhome = tmp_path / "jupyter"
    settings = jhome / "settings"
    for plugin, value in {"docmanager-extension/plugin": {"autosave": False},
                          "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}}.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(jhome / "config"), "JUPYTER_RUNTIME_DIR": str(jhome / "runtime"),
           "JUPYTER_DATA_DIR": str(jhome / "data"), "IPYTHONDIR": str(jhome / "ipython"),
           "JUPYTER_PLATFORM_DIRS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("JUPYTER_PATH", None)
    port = _free_port()
    cmd = [sys.executable, "-m", "jupyterlab", *lab_flags(), "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
           f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={jhome / 'workspaces'}"]
    log = (tmp_path / "lab.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    server = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited ({proc.returncode}):\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
            try:
                _get(f"{base}/api/status", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in {SERVER_START_S} s:\n"
                                f"{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield base
    finally:
        family = [server]
        try:
            family += server.children(recursive=True)  # kernels run in their own sessions: not in the group
            for k in _get(f"{base}/api/kernels"):
                _request(f"{base}/api/kernels/{k['id']}", "DELETE")
        except (OSError, psutil.Error, ValueError):
            pass
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        _, alive = psutil.wait_procs(family[1:], timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        log.close()


def _session(base: str) -> dict:
    """The notebook's session on the server; its path is relative to lab's root: the project root."""
    sessions = [s for s in _get(f"{base}/api/sessions") if s["path"] == f"notebooks/{NOTEBOOK}"]
    assert len(sessions) <= 1, sessions
    return sessions[0] if sessions else {"kernel": {"execution_state": "none"}}


def _wait_for_kernel(page, base: str):
    """Wait until the notebook's kernel is started, connected and idle (choosing ``python3`` if lab asks which
    kernel to start); returns the toolbar's execution indicator. Before the session exists the indicator already
    reads "idle" next to "No Kernel", and Run All then would open the kernel dialog instead of running."""
    indicator = page.locator(".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator")
    name = page.locator(".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName")
    dialog = page.locator(".jp-Dialog")
    deadline = time.monotonic() + UI_S
    while True:
        if dialog.is_visible():  # kernel selection: only when the notebook's kernelspec is unknown here
            select = dialog.locator("select")
            if select.count():
                values = select.locator("option").evaluate_all("os => os.map(o => o.value)")
                choice = next((v for v in values if "python3" in v), None)
                assert choice, f"no python3 kernel offered: {values}"
                select.select_option(value=choice)
            dialog.locator(".jp-mod-accept").click()
        state = _session(base)["kernel"]["execution_state"]
        shown = name.inner_text() if name.count() else ""
        if state == "idle" and shown not in ("", "No Kernel") and indicator.get_attribute("data-status") == "idle":
            return indicator
        assert time.monotonic() < deadline, f"kernel not ready after {UI_S} s: server {state}, lab shows {shown!r}"
        page.wait_for_timeout(250)


@pytest.mark.slow
def test_run_all_in_lab_writes_at_the_project_root(chromium, lab, project, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    before = tree_digest(project / "notebooks")
    shots, page_errors = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})  # 00_data fits: one screenshot
            page.set_default_timeout(UI_S * 1000)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(f"{lab}/lab/tree/notebooks/{NOTEBOOK}?token={TOKEN}")
            expect(page.locator(".jp-NotebookPanel .jp-Notebook .jp-CodeCell").first).to_be_visible()
            kernel = _wait_for_kernel(page, lab)
            t0 = time.monotonic()
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
            n_code = page.locator(".jp-Notebook .jp-CodeCell").count()
            # every code cell shows its execution count ([n]:, not [*]: or [ ]:), or a cell failed (Run All stops
            # there); then the kernel goes idle
            page.wait_for_function(
                """([n, sel]) => {
                    const ps = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')];
                    return (ps.length === n && ps.every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim())))
                        || [...document.querySelectorAll(sel)].some(e => /Traceback|Error/.test(e.textContent));
                }""", arg=[n_code, STDERR], timeout=RUN_ALL_S * 1000)
            expect(kernel).to_have_attribute("data-status", "idle", timeout=RUN_ALL_S * 1000)
            deadline = time.monotonic() + UI_S
            while (state := _session(lab)["kernel"]["execution_state"]) != "idle":
                assert time.monotonic() < deadline, f"kernel still {state} after the last cell ran"
                time.sleep(0.5)
            elapsed = time.monotonic() - t0
            outputs = page.locator(".jp-Notebook .jp-OutputArea-output").all_inner_texts()
            bad = [t for t in page.locator(STDERR).all_inner_texts() if re.search(r"Traceback|Error|Warning", t)]
            assert not bad, bad  # a red box in the notebook (errors render as stderr too)
            for text in ("IProgress not found", "Traceback", "Error displaying widget"):  # tqdm without ipywidgets
                assert not [t for t in outputs if text in t], (text, outputs)
            img = page.locator(".jp-Notebook .jp-OutputArea-output img").last
            expect(img).to_be_visible()
            img.scroll_into_view_if_needed()
            assert img.evaluate("i => i.complete && i.naturalWidth > 100 && i.naturalHeight > 50"), "empty figure"
            shots.append(tmp_path / "lab_00_data.png")
            page.screenshot(path=str(shots[-1]), full_page=True)
            shots.append(tmp_path / "lab_00_data_figure.png")
            img.locator("xpath=ancestor::div[contains(@class, 'jp-Cell')][1]").screenshot(path=str(shots[-1]))
        except Exception:
            if browser.contexts and browser.contexts[0].pages:  # evidence of how far it got
                shots.append(tmp_path / "lab_00_data_failure.png")
                browser.contexts[0].pages[0].screenshot(path=str(shots[-1]), full_page=True)
            raise
        finally:
            browser.close()
            if dest := os.environ.get("GOLF_BROWSER_SHOTS"):
                Path(dest).mkdir(parents=True, exist_ok=True)
                for s in shots:
                    shutil.copy2(s, Path(dest) / s.name)
    print(f"run all: {elapsed:.1f} s; screenshots: {', '.join(map(str, shots))}; page errors: {page_errors}")
    assert "saved: ['figures/00_data/doc_token_lengths.png'" in "\n".join(outputs)  # relative to the project root
    # the export and the figure at the project root, where `golf run` writes them
    assert json.loads((project / "data" / "manifest.json").read_text())
    fig = project / "figures" / "00_data" / "doc_token_lengths.png"
    assert fig.is_file() and fig.stat().st_size > 5000
    assert sorted(p.name for p in project.iterdir()) == ["data", "figures", "golflib", "notebooks", "pyproject.toml"]
    # ... and nothing under notebooks/: no data/, runs/, figures/, every notebook byte-identical. The one file lab
    # itself writes there is the checkpoint it takes when it opens a notebook that has none (a copy, for File >
    # Revert Notebook to Checkpoint; git ignores .ipynb_checkpoints/): it must be the notebook as opened, so
    # nothing saved the run either
    after = tree_digest(project / "notebooks")
    checkpoint = f".ipynb_checkpoints/{NOTEBOOK.removesuffix('.ipynb')}-checkpoint.ipynb"
    assert after.pop(checkpoint, before[NOTEBOOK]) == before[NOTEBOOK]
    assert after == before
