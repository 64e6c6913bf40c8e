# The tier's image. TensorFlow is needed only for its generated proto modules, so the
# build stage installs it and the final stage keeps just those *_pb2.py files (the tier
# never loads the TensorFlow runtime; see app/backend/protos.py).
FROM python:3.11-slim AS build
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY app app
COPY handlers handlers
COPY processing processing
RUN pip install --no-cache-dir --prefix=/install . \
 && cd /install/lib/python3.11/site-packages \
 && find tensorflow -type f ! -name '*_pb2.py' -delete \
 && find tensorflow -type d -empty -delete \
 && find tensorflow -name '__init__.py' -delete \
 && rm -rf keras tensorboard* tensorflow-*.dist-info jax* ml_dtypes h5py

FROM python:3.11-slim
RUN useradd --system --uid 10001 imagegate
COPY --from=build /install /usr/local
COPY deploy/config.docker.yaml /etc/imagegate/config.yaml
USER imagegate
EXPOSE 8080
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
ENTRYPOINT ["python", "-m", "app", "--config", "/etc/imagegate/config.yaml"]
