"""The OpenAPI document against the application it describes: every route and method of ``make_app`` is
documented and nothing documented is missing, each operation lists the statuses it can answer, the error
codes are those of docs/errors.md, and the document validates as OpenAPI 3.1."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # openapi-spec-validator's, which has no stubs
import numpy as np
import pytest
from openapi_spec_validator import validate
from tornado.httpclient import AsyncHTTPClient
from tornado.routing import PathMatches, Rule
from tornado.web import RequestHandler

from app.openapi.document import ApiConfig, build_document
from app.openapi.schemas import item_error_codes, request_error_codes
from app.serving.server import make_app
from handlers.base import NotFoundHandler
from handlers.oip import OipNotFoundHandler
from handlers.page import PageFileHandler
from processing.errors import ImageDecodeFailed, ItemError
from processing.kinds.base import ItemAnswer
from processing.kinds.classification import Classes, ScoredClass
from processing.kinds.detection import Detection, Detections
from processing.kinds.embedding import Embedding
from processing.kinds.registry import OUTPUT_KINDS
from processing.kinds.tensors import Tensors
from processing.prediction import ItemResult
from processing.v1 import item_document
from tests.conftest import Tier
from tests.support.tier import ROOT

METHODS = ("get", "post", "put", "delete", "patch", "head", "options")
EXAMPLE_VALUES = {"model": "digits", "version": "1", "label": "stable", "route": "canary"}
# Left out on purpose: the browser page's files (a page, not an API) and the v2 catch-all (not an operation).
UNDOCUMENTED = {PageFileHandler, OipNotFoundHandler}
BACKEND = {"500", "502", "503", "504"}
PREDICT = {"200", "400", "404", "413", "415", *BACKEND}
LOOKUP = {"200", "400", "404", *BACKEND}
STATUSES = {
    "predict": PREDICT,
    "predictVersion": PREDICT,
    "predictLabel": PREDICT,
    "listModels": {"200", "500"},
    "modelStatus": LOOKUP,
    "modelVersionStatus": LOOKUP,
    "modelMetadata": LOOKUP,
    "modelVersionMetadata": LOOKUP,
    "healthz": {"200", "500"},
    "readyz": {"200", "503", "500"},
    "metrics": {"200", "500"},
    "openapi": {"200", "500"},
    "v2ServerMetadata": {"200", "500"},
    "v2Live": {"200", "500"},
    "v2Ready": {"200", "400", "500"},  # 400: not ready, as Triton answers
    "v2ModelMetadata": LOOKUP,
    "v2ModelVersionMetadata": LOOKUP,
    "v2ModelReady": LOOKUP,
    "v2ModelVersionReady": LOOKUP,
    "v2Infer": {"200", "400", "404", "413", *BACKEND},
    "v2InferVersion": {"200", "400", "404", "413", *BACKEND},
}


async def served_document(tier: Tier) -> dict[str, Any]:
    response = await AsyncHTTPClient().fetch(tier.url("/openapi.json"))
    assert response.headers["Content-Type"].startswith("application/json")
    document: dict[str, Any] = json.loads(response.body)
    return document


def implemented(handler: type[RequestHandler]) -> set[str]:
    """The methods a handler class answers (those it or a base of ours overrides)."""
    return {m for m in METHODS if getattr(handler, m) is not getattr(RequestHandler, m)}


def rules(tier: Tier) -> list[Rule]:
    return list(make_app(tier.services).wildcard_router.rules)


def target(rules: list[Rule], path: str) -> Rule:
    """The rule Tornado routes ``path`` to: the first whose pattern matches."""
    for rule in rules:
        assert isinstance(rule.matcher, PathMatches)
        if rule.matcher.regex.match(path):
            return rule
    pytest.fail(f"no route serves {path}")


def concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: EXAMPLE_VALUES[m.group(1)], template)


@pytest.mark.gen_test
async def test_the_document_validates_as_openapi_3_1(tier: Tier) -> None:
    document = await served_document(tier)
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["components"]["parameters"]["model"]["schema"]["enum"] == [
        "mobilenet_v2",
        "tiny",
        "digits",
        "mobilenet_v2_bytes",
        "mobilenet_v2_embed",
        "squares",
        "faces",
    ]


@pytest.mark.parametrize("overrides", [[], ["server.admin_token=t0ken"]], ids=["plain", "with-admin"])
@pytest.mark.gen_test
async def test_every_route_and_method_is_documented_and_nothing_else(make_tier: Any, overrides: list[str]) -> None:
    tier = await make_tier(overrides)
    document = await served_document(tier)
    assert any(p.startswith("/admin/") for p in document["paths"]) == bool(overrides)
    app_rules = rules(tier)
    documented: dict[int, set[str]] = {}
    for template, item in document["paths"].items():
        rule = target(app_rules, concrete(template))
        assert rule.target not in (NotFoundHandler, OipNotFoundHandler, *UNDOCUMENTED), template
        methods = {m for m in item if m in METHODS}
        assert methods <= implemented(rule.target), (template, methods)
        documented.setdefault(id(rule), set()).update(methods)
    for rule in app_rules:
        if rule.target in UNDOCUMENTED:
            continue
        assert isinstance(rule.matcher, PathMatches)
        assert documented.get(id(rule)) == implemented(rule.target), (rule.matcher.regex.pattern, rule.target)


@pytest.mark.gen_test
async def test_metrics_are_documented_only_when_served(make_tier: Any) -> None:
    tier = await make_tier(["server.metrics=false"])
    document = await served_document(tier)
    assert "/metrics" not in document["paths"]
    assert all(target(rules(tier), concrete(t)).target is not NotFoundHandler for t in document["paths"])


@pytest.mark.gen_test
async def test_each_operation_documents_the_statuses_it_can_answer(tier: Tier) -> None:
    document = await served_document(tier)
    found = {op["operationId"]: set(op["responses"]) for item in document["paths"].values() for op in item.values()}
    assert found == STATUSES


def test_every_output_kinds_answer_is_a_documented_item() -> None:
    """Each kind's answer schema (processing/kinds) is in the document: its answer, as v1 renders it, validates."""
    document = build_document(ApiConfig(("m",), 8, 1, 1, 1, metrics=False, admin=False, version="0"))
    items = {"$ref": "#/components/schemas/PredictAnswer/properties/predictions/items", **document}
    answers: dict[str, ItemAnswer] = {
        "classification": Classes((ScoredClass(1, "b", 0.5),), np.array([0.5, 0.5])),
        "tensors": Tensors({"boxes": np.zeros((2, 4)), "count": np.array(2)}),
        "embedding": Embedding(np.array([0.6, 0.8], dtype=np.float32)),
        "detection": Detections.of([Detection(1, "face", 0.9, (1.0, 2.0, 3.0, 4.0), ((1.5, 2.5),))], {}),
    }
    assert set(answers) == set(OUTPUT_KINDS), "a new output kind needs an example answer here"
    failed: list[ItemAnswer | ItemError] = [ImageDecodeFailed("not an image")]
    for answer in [*answers.values(), *failed]:
        jsonschema.validate(item_document(ItemResult("source", answer), "list"), items)
        jsonschema.validate(item_document(ItemResult("source", answer), "base64"), items)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"source": "s", "classes": [], "outputs": {}}, items)


def table_codes(heading: str) -> set[str]:
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    (table,) = re.findall(rf"^## {heading}.*?(?=^## )", text, flags=re.MULTILINE | re.DOTALL)
    return set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))


def test_the_error_codes_are_those_of_docs_errors_md() -> None:
    assert set(request_error_codes()) == table_codes("Request errors")
    assert set(item_error_codes()) == table_codes("Item errors")


@pytest.mark.gen_test
async def test_error_answers_carry_the_documented_headers(tier: Tier) -> None:
    document = await served_document(tier)
    for item in document["paths"].values():
        for op in item.values():
            for status, response in op["responses"].items():
                assert "X-Request-Id" in response["headers"]
                if status in ("503", "504") and op["operationId"] != "readyz":
                    assert "Retry-After" in response["headers"], (op["operationId"], status)


@pytest.mark.gen_test
async def test_the_served_document_shows_the_detection_answer_and_its_parameters(tier: Tier) -> None:
    document = await served_document(tier)
    assert "squares" in document["components"]["parameters"]["model"]["schema"]["enum"]
    items = document["components"]["schemas"]["PredictAnswer"]["properties"]["predictions"]["items"]["oneOf"]
    detection = next(item for item in items if "detections" in item["properties"])
    assert detection["properties"]["detections"]["items"]["required"] == [
        "label",
        "class_id",
        "score",
        "box",
        "keypoints",
    ]
    predict = document["paths"]["/v1/models/{model}:predict"]["post"]
    queries = {p["$ref"].rsplit("/", 1)[1] for p in predict["parameters"]}
    assert {"score_threshold", "max_detections", "top_k"} <= queries
    parameters = document["components"]["parameters"]
    assert parameters["score_threshold"]["schema"] | {"description": ""} == {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": "",
    }
    assert parameters["max_detections"]["schema"]["maximum"] == 1000
    schemas = document["components"]["schemas"]
    for form in ("Instances", "PredictMultipart"):
        assert {"score_threshold", "max_detections"} <= set(schemas[form]["properties"])
    assert "score_threshold" in schemas["V2InferRequest"]["properties"]["parameters"]["properties"]
