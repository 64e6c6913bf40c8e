"""The model registry on its own: configured models completed from backend metadata, or refused by key.

``build_served_model`` is fed hand-made metadata (no server); ``load_registry`` talks to the
real local backend, and to an address where nothing listens.
"""

from __future__ import annotations

import dataclasses
import socket
import time
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import tornado.ioloop

from app.backend.tfserving import TFServingClient
from app.backend.types import ModelMetadata, SignatureInfo, TensorInfo
from app.errors import ModelNotFound
from app.models import ModelRegistry, ServedModel, build_served_model, load_registry
from app.settings import PostprocessSettings, Settings, SettingsError, load_settings
from processing.kinds.registry import OUTPUT_KINDS
from tests.conftest import dev_settings
from tests.support.backend import LocalBackend
from tests.support.specs import postprocess_spec, preprocess_spec
from tests.support.tier import ROOT

IMAGE = (-1, 224, 224, 3)
MODELS_DIR = ROOT / "build" / "models"


def tensor(name: str, dtype: str = "uint8", shape: tuple[int, ...] | None = IMAGE) -> TensorInfo:
    return TensorInfo(name, dtype, shape)


def signature(inputs: list[TensorInfo], outputs: list[TensorInfo] | None = None) -> SignatureInfo:
    outs = outputs if outputs is not None else [tensor("logits", "float32", (-1, 10))]
    return SignatureInfo({t.name: t for t in inputs}, {t.name: t for t in outs})


def metadata(**signatures: SignatureInfo) -> ModelMetadata:
    """Metadata as the backend would give it; ``serving_default`` takes one uint8 224x224x3 ``images``."""
    sigs = signatures or {"serving_default": signature([tensor("images")])}
    return ModelMetadata("m", 1, sigs, {})


def settings(*overrides: str) -> Settings:
    """Settings with one model, ``m``; each override is a key under ``models.m``."""
    return load_settings(None, {}, ["models.m.signature=serving_default", *(f"models.m.{o}" for o in overrides)])


def build(meta: ModelMetadata, *overrides: str) -> ServedModel:
    return build_served_model("m", settings(*overrides), meta)


def refusal(meta: ModelMetadata, *overrides: str) -> str:
    """The SettingsError message for building ``m``; fails the test if it builds."""
    with pytest.raises(SettingsError) as refused:
        build(meta, *overrides)
    return str(refused.value)


# --- Completing a model from its metadata ----------------------------------------------------


def test_what_the_config_leaves_out_is_discovered_from_the_signature() -> None:
    model = build(metadata())
    assert model.name == model.served_name == "m"
    assert model.address == "127.0.0.1:8500"  # backend.address's default
    assert (model.signature, model.input_name, model.output_names) == ("serving_default", "images", ("logits",))
    assert model.preprocess == preprocess_spec(224, 224, dtype="uint8")
    assert model.postprocess == postprocess_spec()
    assert model.ref(3) == dataclasses.replace(model.ref(), version=3)
    assert (model.ref().name, model.ref().signature) == ("m", "serving_default")


def test_served_name_backend_and_signature_come_from_the_config() -> None:
    meta = metadata(serving_uint8=signature([tensor("pixels", "uint8", (-1, 32, 48, 1))]))
    model = build(meta, "signature=serving_uint8", "served_name=other", "backend=10.0.0.7:9000", "input.color=gray")
    assert (model.served_name, model.address, model.signature) == ("other", "10.0.0.7:9000", "serving_uint8")
    assert model.ref(label="canary").name == "other" and model.ref().signature == "serving_uint8"
    assert model.preprocess == preprocess_spec(32, 48, dtype="uint8", color="gray")


def test_the_discovered_float_input_is_normalised_as_configured() -> None:
    meta = metadata(serving_default=signature([tensor("x", "float32", (-1, 8, 8, 1))]))
    model = build(meta, "input.color=gray", "input.scale=0.5")
    assert model.input_name == "x"
    assert model.preprocess == preprocess_spec(8, 8, color="gray", scale=0.5)


def test_an_nchw_input_reads_its_size_from_the_last_two_dimensions() -> None:
    meta = metadata(serving_default=signature([tensor("x", "float32", (-1, 3, 32, 48))]))
    model = build(meta, "input.layout=nchw")
    assert model.preprocess == preprocess_spec(32, 48, layout="nchw")
    assert model.preprocess.shape == (3, 32, 48)


def test_a_size_the_model_leaves_open_is_taken_from_the_config() -> None:
    meta = metadata(serving_default=signature([tensor("images", "float32", (-1, -1, -1, 3))]))
    model = build(meta, "input.height=100", "input.width=120")
    assert model.preprocess == preprocess_spec(100, 120)


def test_an_input_of_unknown_rank_needs_its_size_in_the_config() -> None:
    meta = metadata(serving_default=signature([tensor("images", "float32", None)]))
    assert build(meta, "input.height=64", "input.width=64").preprocess == preprocess_spec(64, 64)
    assert refusal(meta, "input.width=64").startswith("models.m.input.height: the model does not fix it")


def test_a_configured_size_that_agrees_with_the_model_is_accepted() -> None:
    model = build(metadata(), "input.height=224", "input.width=224", "input.dtype=uint8", "input.name=images")
    assert model.preprocess == preprocess_spec(224, 224, dtype="uint8")


def test_several_inputs_are_told_apart_by_the_configured_name() -> None:
    meta = metadata(serving_default=signature([tensor("images"), tensor("mask", "float32", (-1, 10, 10, 1))]))
    assert build(meta, "input.name=images").input_name == "images"
    message = refusal(meta)
    assert message.startswith("models.m.input.name: the signature has 2 tensors (images, mask)")


def test_the_tensors_kind_takes_every_output_sorted_by_name() -> None:
    outputs = [tensor(n, "float32", (-1, 4)) for n in ("scores", "boxes", "classes")]
    meta = metadata(serving_default=signature([tensor("images")], outputs))
    assert build(meta, "postprocess.kind=tensors").output_names == ("boxes", "classes", "scores")
    assert build(meta, "postprocess.kind=tensors", "output=scores").output_names == ("scores",)
    assert build(meta, "output=classes").output_names == ("classes",)


def test_raw_the_former_name_of_the_tensors_kind_still_works() -> None:
    outputs = [tensor(n, "float32", (-1, 4)) for n in ("scores", "boxes")]
    model = build(metadata(serving_default=signature([tensor("images")], outputs)), "postprocess.kind=raw")
    assert model.output_kind is OUTPUT_KINDS["tensors"]
    assert model.describe()["output"] == {"kind": "tensors", "names": ["boxes", "scores"]}


def test_every_kind_the_settings_accept_is_an_output_kind() -> None:
    accepted = typing.get_args(typing.get_type_hints(PostprocessSettings)["kind"])  # the Literal's values
    assert set(accepted) == {*OUTPUT_KINDS, "raw"}
    for kind in accepted:
        assert PostprocessSettings(kind=kind).kind in OUTPUT_KINDS


def test_labels_are_read_from_the_configured_file(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n  fish  \n", encoding="utf-8")
    model = build(metadata(), f"postprocess.labels={labels}", "postprocess.softmax=true", "postprocess.top_k=2")
    assert model.postprocess == postprocess_spec(activation="softmax", top_k=2, labels=("cat", "dog", "fish"))


@pytest.mark.parametrize(("max_batch_size", "batched"), [(0, False), (1, False), (2, True), (16, True)])
def test_a_model_is_batched_when_its_batch_size_is_above_one(max_batch_size: int, batched: bool) -> None:
    overrides = [f"batching.max_batch_size={max_batch_size}", "batching.max_wait_ms=7", "batching.max_in_flight=3"]
    model = build(metadata(), *overrides)
    assert model.batched is batched
    assert (model.max_batch_size, model.max_wait_ms, model.max_in_flight) == (max_batch_size, 7.0, 3)


def test_describe_reports_the_completed_model() -> None:
    assert build(metadata(), "postprocess.top_k=3").describe() == {
        "name": "m",
        "signature": "serving_default",
        "input": {"name": "images", "dtype": "uint8", "shape": [-1, 224, 224, 3]},
        "output": {"kind": "classification", "names": ["logits"]},
        "top_k": 3,
        "threshold": None,
    }


@pytest.mark.parametrize(
    ("overrides", "top_k"),
    [
        ([], 5),  # a single-label classifier: the 5 best
        (["postprocess.threshold=0.5"], None),  # multi-label: every class above the threshold
        (["postprocess.threshold=0.5", "postprocess.top_k=3"], 3),  # ... at most the configured top_k
        (["postprocess.top_k=2"], 2),
    ],
)
def test_the_default_of_five_classes_applies_without_a_threshold(overrides: list[str], top_k: int | None) -> None:
    model = build(metadata(), "postprocess.activation=sigmoid", *overrides)
    assert model.postprocess.top_k == top_k
    assert model.describe()["top_k"] == top_k


# --- Refusing a config the model contradicts -------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "overrides", "expected"),
    [
        pytest.param(
            metadata(),
            ["signature=serving_uint8"],
            "models.m.signature: 'serving_uint8' is not in the model (it has: serving_default)",
            id="wrong-signature",
        ),
        pytest.param(
            metadata(),
            ["input.name=pixels"],
            "models.m.input.name: 'pixels' is not in the signature (it has: images)",
            id="wrong-input-name",
        ),
        pytest.param(
            metadata(),
            ["input.dtype=float32"],
            "models.m.input.dtype: configured float32 but the model takes uint8",
            id="dtype-mismatch",
        ),
        pytest.param(
            metadata(serving_default=signature([tensor("images", "int32")])),
            [],
            "models.m.input.dtype: the model takes int32; only float32 and uint8 are supported",
            id="unsupported-dtype",
        ),
        pytest.param(
            metadata(),
            ["input.height=256"],
            "models.m.input.height: configured 256 but the model takes 224",
            id="height-contradicts",
        ),
        pytest.param(
            metadata(),
            ["input.width=100"],
            "models.m.input.width: configured 100 but the model takes 224",
            id="width-contradicts",
        ),
        pytest.param(
            metadata(serving_default=signature([tensor("images", "uint8", (-1, -1, -1, 3))])),
            ["input.height=64"],
            "models.m.input.width: the model does not fix it; set it in the configuration",
            id="unfixed-size-not-configured",
        ),
        pytest.param(
            metadata(),
            ["input.color=gray"],
            "models.m.input.color: gray gives 1 channels; the model takes 3",
            id="channels-contradict",
        ),
        pytest.param(
            metadata(serving_default=signature([tensor("images", "uint8", (-1, 224, 224))])),
            [],
            "models.m.input: the model's input has shape [-1, 224, 224], not a 4-D image batch",
            id="not-an-image-batch",
        ),
        pytest.param(
            metadata(
                serving_default=signature(
                    [tensor("images")], [tensor("probs", "float32", (-1, 10)), tensor("logits", "float32", (-1, 10))]
                )
            ),
            [],
            "models.m.output: the signature has 2 tensors (logits, probs); name one",
            id="several-outputs-unnamed",
        ),
        pytest.param(
            metadata(),
            ["output=probs"],
            "models.m.output: 'probs' is not in the signature (it has: logits)",
            id="wrong-output-name",
        ),
    ],
)
def test_a_config_the_model_contradicts_is_refused_naming_the_key(
    meta: ModelMetadata, overrides: list[str], expected: str
) -> None:
    assert refusal(meta, *overrides) == expected


def test_a_model_with_no_signatures_names_none() -> None:
    assert (
        refusal(ModelMetadata("m", 1, {}, {}))
        == "models.m.signature: 'serving_default' is not in the model (it has: none)"
    )


# --- The registry ---------------------------------------------------------------------------------


def registry(*names: str) -> ModelRegistry:
    overrides = [f"models.{n}.signature=serving_default" for n in names]
    configured = load_settings(None, {}, overrides)
    return ModelRegistry({n: build_served_model(n, configured, metadata()) for n in names})


def test_get_model_returns_a_configured_model_and_refuses_any_other_name() -> None:
    models = registry("a", "b")
    assert models.get_model("a").name == "a" and models.get_model("b").name == "b"
    for name in ("c", "", "A"):
        with pytest.raises(ModelNotFound) as refused:
            models.get_model(name)
        assert (refused.value.code, refused.value.status) == ("model_not_found", 404)
        assert refused.value.message == f"model {name!r} is not configured"


def test_the_registry_is_a_read_only_mapping_by_public_name() -> None:
    models = registry("b", "a")
    assert isinstance(models, Mapping)
    assert list(models) == ["b", "a"] and len(models) == 2
    assert "a" in models and "c" not in models
    assert models["a"] is models.get_model("a")
    assert models.get("c") is None
    with pytest.raises(KeyError):
        models["c"]
    assert not hasattr(models, "__setitem__")


# --- load_registry against a backend --------------------------------------------------------------


@pytest.fixture
def client(io_loop: tornado.ioloop.IOLoop) -> Iterator[TFServingClient]:
    client = TFServingClient("pick_first", retry_after_s=1)
    yield client
    io_loop.run_sync(client.close)


@pytest.fixture
def refused_address() -> Iterator[str]:
    """A loopback port bound but not listening: connections to it are refused while the test runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def labels_of(name: str) -> tuple[str, ...]:
    return tuple((MODELS_DIR / name / "labels.txt").read_text(encoding="utf-8").splitlines())


@pytest.mark.gen_test(timeout=60)
async def test_load_registry_completes_every_dev_model_from_the_local_backend(
    backend: LocalBackend, client: TFServingClient
) -> None:
    models = await load_registry(dev_settings(backend.address), client)
    assert sorted(models) == ["digits", "mobilenet_v2", "mobilenet_v2_bytes", "mobilenet_v2_embed", "squares", "tiny"]
    assert {m.address for m in models.values()} == {backend.address}
    assert not any(m.batched for m in models.values())

    mobilenet = models.get_model("mobilenet_v2")
    assert (mobilenet.signature, mobilenet.input_name, mobilenet.output_names) == (
        "serving_uint8",
        "images",
        ("probabilities",),
    )
    assert mobilenet.preprocess == preprocess_spec(224, 224, dtype="uint8", resize="crop", resize_shorter=256)
    assert mobilenet.postprocess == postprocess_spec(top_k=5, labels=labels_of("mobilenet_v2"))
    assert len(mobilenet.postprocess.labels) == 1000

    tiny = models.get_model("tiny")
    assert (tiny.signature, tiny.input_name, tiny.output_names) == ("serving_uint8", "images", ("logits",))
    assert tiny.preprocess == preprocess_spec(224, 224, dtype="uint8")
    assert tiny.postprocess == postprocess_spec(activation="softmax", top_k=3, labels=labels_of("tiny"))

    digits = models.get_model("digits")
    assert (digits.signature, digits.input_name, digits.output_names) == (
        "serving_default",
        "images",
        ("probabilities",),
    )
    assert digits.preprocess == preprocess_spec(8, 8, color="gray", scale=1 / 255)
    assert digits.postprocess == postprocess_spec(top_k=3, labels=tuple(str(d) for d in range(10)))


@pytest.mark.gen_test(timeout=60)
async def test_load_registry_refuses_a_config_the_served_model_contradicts(
    backend: LocalBackend, client: TFServingClient
) -> None:
    configured = dev_settings(backend.address, ["models.mobilenet_v2.input.height=299"])
    with pytest.raises(SettingsError, match=r"^models\.mobilenet_v2\.input\.height: configured 299 but"):
        await load_registry(configured, client)


@pytest.mark.gen_test(timeout=60)
async def test_load_registry_gives_up_on_a_model_the_backend_does_not_serve(
    backend: LocalBackend, client: TFServingClient
) -> None:
    configured = dev_settings(backend.address, ["backend.startup_timeout_s=0.3", "models.nope.signature=x"])
    with pytest.raises(SettingsError, match=r"^models\.nope: no metadata from the backend at "):
        await load_registry(configured, client)


@pytest.mark.gen_test(timeout=30)
async def test_load_registry_gives_up_on_an_unreachable_backend_within_the_startup_timeout(
    refused_address: str, client: TFServingClient
) -> None:
    configured = load_settings(
        None,
        {},
        [f"backend.address={refused_address}", "backend.startup_timeout_s=0.5", "models.tiny.signature=serving_uint8"],
    )
    started = time.monotonic()
    with pytest.raises(SettingsError) as refused:
        await load_registry(configured, client)
    assert time.monotonic() - started < 10
    message = str(refused.value)
    assert message.startswith(f"models.tiny: no metadata from the backend at {refused_address} within 0.5 s: ")
    assert "UNAVAILABLE" in message
