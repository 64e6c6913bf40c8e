# syntax=docker/dockerfile:1
# Two images from one file (after `make models`, which writes build/models):
#   docker build -t imagegate:0.1.0 .                                  the tier (the last stage)
#   docker build --target models -t imagegate-models:0.1.0 .           the demo models for Kubernetes
#
# The base is pinned by version and by the digest of its multi-architecture index. The digest was not
# pulled here (no Docker engine on the development machine): it is the one that public projects pin for
# this tag. Check it with `docker buildx imagetools inspect python:3.11.14-slim-bookworm`, or pass
# --build-arg PYTHON_IMAGE=... to build on another base.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# The demo models and TF Serving's model config, for the initContainers that copy them into an
# emptyDir (deploy/k8s). Built on the tier's base so that a node holding the tier's image pulls only
# the models layer; the base also provides the cp and find that the initContainers run.
FROM ${PYTHON_IMAGE} AS models
COPY build/models/ /models/
COPY deploy/models.config /models/models.config
USER 10001:10001

# Build stage: the tier's runtime with --no-deps (deploy/image/tier-requirements.txt), and from
# TensorFlow only its generated *_pb2.py modules: tensorflow-serving-api's protos import them, and
# app/backend/protos.py loads them without TensorFlow's runtime, which never reaches the final stage.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY deploy/image/tier-requirements.txt deploy/image/proto-requirements.txt ./
RUN pip install --no-cache-dir --no-deps --prefix=/install -r tier-requirements.txt \
 && pip install --no-cache-dir --no-deps --prefix=/tf -r proto-requirements.txt
WORKDIR /tf/lib/python3.11/site-packages
RUN find tensorflow -name '*_pb2.py' -exec cp --parents {} /install/lib/python3.11/site-packages/ \; \
 && find /install/lib/python3.11/site-packages/numpy -depth -type d -name tests -exec rm -rf {} + \
 && rm -rf /install/lib/python3.11/site-packages/tornado/test /install/bin \
 && python -m compileall -q /install/lib/python3.11/site-packages/tensorflow
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY app app
COPY handlers handlers
COPY processing processing
RUN pip install --no-cache-dir --no-deps --prefix=/install .

# The tier: the product (app, handlers, processing), its runtime and the generated protos; nothing else.
FROM ${PYTHON_IMAGE} AS tier
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
COPY deploy/config.docker.yaml /etc/imagegate/config.yaml
# Numeric, so that Kubernetes' runAsNonRoot can verify it without a passwd entry.
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["python", "-m", "app"]
CMD ["--config", "/etc/imagegate/config.yaml"]
