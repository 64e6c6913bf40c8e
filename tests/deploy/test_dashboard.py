"""The Grafana dashboard queries only metrics a real tier exposes, and Prometheus finds the pods as annotated.

Every PromQL expression of deploy/grafana/imagegate.json is parsed (promql-parser, the Rust parser's
bindings) with Grafana's variables filled in; each metric it selects must be in a real scrape of a
tier that has answered predicts (``_bucket``/``_sum``/``_count`` of a histogram count as the histogram).
deploy/prometheus/scrape.yaml's rules are applied to the pods of the rendered manifests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest
import yaml
from tornado.httpclient import AsyncHTTPClient

from tests.conftest import TierFactory
from tests.deploy.manifests import ROOT, Doc, container, named
from tests.deploy.relabel import pod_targets, relabel
from tests.support.imageserver import FIXTURES, ImageServer

DASHBOARD = ROOT / "deploy" / "grafana" / "imagegate.json"
SCRAPE = ROOT / "deploy" / "prometheus" / "scrape.yaml"
JSON = {"Content-Type": "application/json"}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
# Queried by the dashboard, declared by the tier, but without a sample until a backend call fails, a
# canary fails or is rolled back, a route sends shadow traffic, or a refused connection lingers (none of
# which the scraped tier does).
NO_SAMPLE_WITHOUT_A_FAILURE = {
    "imagegate_backend_failures_total",
    "imagegate_canary_fallbacks_total",
    "imagegate_lingering_closes_total",
    "imagegate_rollbacks_total",
    "imagegate_shadow_requests_total",
    "imagegate_shadow_predict_duration_seconds_bucket",
}


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def panels(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in document["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def expressions(document: dict[str, Any]) -> list[str]:
    """Every panel target's PromQL, and the metric queries of the template variables."""
    found = [t["expr"] for p in panels(document) for t in p.get("targets", [])]
    for variable in document["templating"]["list"]:
        if variable["type"] == "query":
            (metric,) = re.findall(r"label_values\((\w+)\s*,", variable["query"]["query"])
            found.append(metric)
    return found


def parse(expr: str) -> promql_parser.Expr:
    """``expr`` with Grafana's variables filled in: intervals become a duration, the others a regex."""
    filled = re.sub(r"\$\{?__\w+\}?", "5m", expr)
    filled = re.sub(r"\$\{?\w+\}?", ".*", filled)
    return promql_parser.parse(filled)


def queried(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(parse(expr), visit)
    assert names, f"no metric in {expr!r}"
    return names


def declared(scrape: str) -> dict[str, str]:
    """Metric name -> type, from the scrape's ``# TYPE`` lines."""
    return {m[1]: m[2] for m in re.finditer(r"^# TYPE (\S+) (\S+)$", scrape, re.MULTILINE)}


def sampled(scrape: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in scrape.splitlines() if line and not line.startswith("#")}


def family(name: str, types: dict[str, str]) -> str | None:
    """The declared metric ``name`` selects: itself, or the histogram whose series it is."""
    if name in types and types[name] != "histogram":
        return name
    base = next((name.removesuffix(s) for s in HISTOGRAM_SERIES if name.endswith(s)), None)
    return base if base is not None and types.get(base) == "histogram" else None


def test_the_dashboard_is_well_formed() -> None:
    document = dashboard()
    ids = [p["id"] for p in panels(document)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    graphs = [p for p in panels(document) if p["type"] != "row"]
    assert graphs and all(p.get("targets") and p.get("title") for p in graphs)
    for panel in graphs:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    for expr in expressions(document):
        queried(expr)  # parses, and selects at least one metric


@pytest.mark.gen_test(timeout=120)
async def test_every_metric_the_dashboard_queries_is_in_a_real_scrape(
    make_tier: TierFactory, images: ImageServer
) -> None:
    # A batching model fills the batch sizes; the answer cache on, its lookups.
    tier = await make_tier(["models.tiny.batching.max_batch_size=4", "cache.max_bytes=1048576"])
    client = AsyncHTTPClient()
    predict = tier.url("/v1/models/tiny:predict")
    photo, jpeg = (FIXTURES / "coffee.jpg").read_bytes(), {"Content-Type": "image/jpeg"}
    answers = [
        await client.fetch(predict, method="POST", body=photo, headers=jpeg),
        await client.fetch(predict, method="POST", body=json.dumps([images.url("chelsea.jpg")]), headers=JSON),
        await client.fetch(
            tier.url("/v1/models/nope:predict"), method="POST", body=photo, headers=jpeg, raise_error=False
        ),
    ]
    assert [a.code for a in answers] == [200, 200, 404]
    scrape = (await client.fetch(tier.url("/metrics"))).body.decode()

    types, series = declared(scrape), sampled(scrape)
    names = {name for expr in expressions(dashboard()) for name in queried(expr)}
    missing = sorted(name for name in names if family(name, types) is None)
    assert missing == [], f"queried by the dashboard, not in the scrape: {missing}"
    empty = sorted(n for n in names if not {n, *(f"{family(n, types)}{s}" for s in HISTOGRAM_SERIES)} & series)
    assert empty == sorted(NO_SAMPLE_WITHOUT_A_FAILURE & names)
    ours = {name for name in types if name.startswith("imagegate_") and not name.endswith("_created")}
    unshown = ours - {family(n, types) for n in names}  # prometheus-client's _created gauges: time of the first use
    assert unshown == set(), "every metric of the tier has a panel"


def scrape_job(name: str = "imagegate") -> dict[str, Any]:
    (job,) = [j for j in yaml.safe_load(SCRAPE.read_text(encoding="utf-8"))["scrape_configs"] if j["job_name"] == name]
    found: dict[str, Any] = job
    return found


def scrape_rules(name: str = "imagegate") -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = scrape_job(name)["relabel_configs"]
    return rules


def tier_template(rendered: list[Doc]) -> Doc:
    template: Doc = named(rendered, "Deployment", "imagegate")["spec"]["template"]
    return template


@pytest.mark.parametrize("pod_ip", ["10.1.2.3", "fd00:10:244::7"])
def test_the_scrape_config_finds_each_tier_pod_on_its_annotated_port_and_path(rendered: list[Doc], pod_ip: str) -> None:
    deployment = named(rendered, "Deployment", "imagegate")
    template = tier_template(rendered)
    annotations = template["metadata"]["annotations"]
    (http,) = [p for p in container(deployment, "tier")["ports"] if p["name"] == "http"]
    config = yaml.safe_load(named(rendered, "ConfigMap", "imagegate-config")["data"]["config.yaml"])
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == http["containerPort"] == config["server"]["port"]
    assert annotations["prometheus.io/path"] == "/metrics"  # the route the real-scrape test reads

    namespace = deployment["metadata"]["namespace"]
    assert scrape_job()["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": [namespace]}}]
    targets = pod_targets(template, namespace, "imagegate-abc12", pod_ip)
    kept = [t for t in (relabel(target, scrape_rules()) for target in targets) if t is not None]
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    assert [(t["__address__"], t["__metrics_path__"]) for t in kept] == [
        (f"{host}:{http['containerPort']}", "/metrics")
    ]
    assert (kept[0]["namespace"], kept[0]["pod"]) == (namespace, "imagegate-abc12")


def test_the_scrape_config_leaves_other_pods_and_unannotated_tiers_alone(rendered: list[Doc]) -> None:
    tfserving = named(rendered, "Deployment", "tfserving")["spec"]["template"]
    tier = tier_template(rendered)
    quiet = {**tier, "metadata": {**tier["metadata"], "annotations": {"prometheus.io/scrape": "false"}}}
    for template in (tfserving, quiet):
        targets = pod_targets(template, "imagegate", "some-pod", "10.1.2.4")
        assert [relabel(t, scrape_rules()) for t in targets] == [None] * len(targets)


def test_the_scrape_config_finds_tfserving_on_its_prometheus_endpoint(rendered: list[Doc]) -> None:
    deployment = named(rendered, "Deployment", "tfserving")
    template = deployment["spec"]["template"]
    tfserving = container(deployment, "tfserving")
    (metrics,) = [p for p in tfserving["ports"] if p["name"] == "metrics"]
    args = dict(a.removeprefix("--").partition("=")[::2] for a in tfserving["args"])
    assert int(args["rest_api_port"]) == metrics["containerPort"]
    monitoring = named(rendered, "ConfigMap", "tfserving-monitoring")["data"]["monitoring.config"]
    (path,) = re.findall(r'path:\s*"([^"]+)"', monitoring)
    assert re.search(r"enable:\s*true", monitoring)
    (mount,) = [m for m in tfserving["volumeMounts"] if m["name"] == "monitoring"]
    assert args["monitoring_config_file"] == f"{mount['mountPath']}/monitoring.config"

    namespace = deployment["metadata"]["namespace"]
    targets = pod_targets(template, namespace, "tfserving-abc12", "10.1.2.5")
    kept = [t for t in (relabel(target, scrape_rules("tfserving")) for target in targets) if t is not None]
    assert [(t["__address__"], t["__metrics_path__"]) for t in kept] == [(f"10.1.2.5:{metrics['containerPort']}", path)]
    tier = pod_targets(tier_template(rendered), namespace, "imagegate-abc12", "10.1.2.6")
    assert [relabel(t, scrape_rules("tfserving")) for t in tier] == [None] * len(tier)
