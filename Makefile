# golflib — set-up and entry points. Every target creates/uses the local virtualenv in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build here (installed from local disk); on a GPU machine install your CUDA build of torch into .venv first,
# or override (the records' CUDA stack): make setup TORCH="torch==2.9.1 --index-url https://download.pytorch.org/whl/cu128"
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.golflib-installed

FA3_WHEELS ?= https://windreamer.github.io/flash-attention3-wheels/cu128_torch291/

.PHONY: setup setup-gpu demo test lab system-deps clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev,lab]"
	# notebooks are committed without outputs: the nbstripout filter (.gitattributes) strips them on `git add`
	if git rev-parse --git-dir >/dev/null 2>&1; then $(VENV)/bin/nbstripout --install; fi
	touch $(STAMP)

setup: $(STAMP)

# the records' tested CUDA stack (SPEC §3.D6): torch 2.9.1+cu128 and the FlashAttention 3 wheel built for it; then
# run `.venv/bin/golf gpu-check` on the GPU machine before training
setup-gpu:
	$(MAKE) setup TORCH="torch==2.9.1 --index-url https://download.pytorch.org/whl/cu128"
	$(PY) -m pip install -q --no-deps flash_attn_3 --find-links $(FA3_WHEELS)

demo: setup
	$(VENV)/bin/golf demo

test: setup
	$(PY) -m pytest -q -n 2  # two workers (pytest-xdist): CI and this machine have 2 cores

# JupyterLab rooted at the repository (runs/, figures/, data/ in its file browser), opening on notebooks/; every
# notebook enters the project root first, so it writes where `golf run` does. Extra flags: make lab ARGS="--port 8899"
LAB_ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: setup
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (golflib)"
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks $(LAB_ROOT_FLAG) $(ARGS)

# Debian's Chromium for tests/browser (JupyterLab driven by playwright, which uses /usr/bin/chromium) and lrzip for
# the per-group codec (golflib/quant/pergroup.py); needs root
system-deps:
	test -x /usr/bin/chromium && command -v lrzip >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium lrzip; }

clean-venv:
	rm -rf $(VENV)
