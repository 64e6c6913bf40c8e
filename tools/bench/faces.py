"""Scenario 11: the face detector ``faces`` (issue 27) through the real local backend, an information row.

``faces`` as ``make run`` serves it (BlazeFace short-range, letterbox 128, the detection kind) under 4 x 640x480 URLs
per request at c=4, against the real local backend (TensorFlow), as scenario 10 measures its local rows: the tier's
and the backend's CPU per image from their processes' counters (utime + stime of all threads), over the images
answered. What the tier spends is the download, decode, letterbox to 128x128, and mapping boxes and keypoints back
to each photo's pixels; the backend's is the network plus the in-graph decoding and weighted NMS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tools.localserving.launcher import start_local_backend

if TYPE_CHECKING:
    from tools.bench.run import Harness

MODEL = "faces"
CONCURRENCY = 4


def models(labels: str) -> dict[str, dict[str, Any]]:
    """``faces`` as deploy/config.dev.yaml has it."""
    spec = {"height": 128, "width": 128, "resize": "letterbox"}
    post = {"kind": "detection", "score_threshold": 0.5, "labels": labels}
    return {MODEL: {"signature": "serving_default", "input": spec, "postprocess": post}}


def scenario_faces(h: Harness) -> None:
    from tools.bench.run import MODELS, _summary

    base = MODELS / MODEL
    local = start_local_backend(model_name=MODEL, model_base_path=base)
    best: dict[str, Any] | None = None
    try:
        config = h.tier_config("faces_local", models(str(base / "labels.txt")), local.address)
        bodies = h.bodies("small4", h.workload.small, per_request=4)
        for _round in range(h.timing.rounds):
            child, url = h.start_tier(config, model=MODEL)
            try:
                result = h.load_measured(child.pid, url, bodies, CONCURRENCY, backend_pid=local.proc.pid)
            finally:
                child.stop()
            print(f"    {MODEL} on the local backend: {_summary(result)}", flush=True)
            if best is None or result["cpu_ms_per_image"] < best["cpu_ms_per_image"]:
                best = result  # the lowest: other tenants of the cores only ever add to it
    finally:
        local.stop()
    assert best is not None
    h.raw["faces"] = best
    h.add(
        f"11 face detection ({MODEL}), 4 x 640x480 per request, c={CONCURRENCY}, local backend",
        "(info)",
        f"tier {best['cpu_ms_per_image']:.2f} ms CPU per image, backend (TensorFlow) "
        f"{best['backend_cpu_ms_per_image']:.2f} ms; {best['images_per_s']:.0f} img/s, p50 {best['p50_ms']:.1f} ms, "
        f"statuses {best['statuses']}, item errors {best['item_errors']}",
        "",
        "info",
    )
