# a2x developer entry points. Both main targets are idempotent: stamps skip finished installs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
DEMO_TRANSCRIPT := And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.

.PHONY: demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Runtime install (+ plot extra for the demo); redone only when pyproject.toml changes.
$(VENV)/.stamp-base: pyproject.toml | $(PY)
	$(PIP) install -e ".[plot]"
	touch $@

# Test install: test extras plus Blender as a Python module (bpy wheels are CPython 3.11).
$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-base
	$(PIP) install -e ".[test,plot]"
	touch $@

demo: $(VENV)/.stamp-base
	mkdir -p out/demo
	$(VENV)/bin/a2x animate samples/jfk.flac --model default --fps 60 --overwrite \
		-o out/demo/demo.json -o out/demo/demo.csv --plot out/demo/demo.png

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .

test: $(VENV)/.stamp-test lint
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(VENV)/.stamp-test
	$(PY) benchmarks/lipsync_eval.py
	$(PY) benchmarks/speed_default.py

clean:
	rm -rf out dist build .pytest_cache
