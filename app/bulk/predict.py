"""One batch of inputs as one predict request, and its answer as one result line per input.

Files go up as multipart ``image`` fields, URLs as the JSON ``instances`` form (docs/errors.md). The answer
keeps the order of the request, so results are matched by position, not by the tier's ``source``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from app.bulk.inputs import Input
from app.bulk.transport import Answer, TierClient

Line = dict[
    str, Any
]  # one line of the output: source, model, version, then the answer (classes, embedding...) or error


@dataclass(frozen=True)
class Job:
    """What every request of a run shares."""

    model: str
    top_k: int | None
    max_upload_bytes: int | None  # the tier's limit from GET /v1/models; a bigger file is not sent
    encoding: str | None = None  # how the tier writes embeddings: list or base64; None: the tier's choice
    score_threshold: float | None = None  # a detection model's, over its configured one
    max_detections: int | None = None  # a detection model's, over its configured one

    def fields(self) -> dict[str, Any]:
        """The request's fields beside its images, those set."""
        values = {
            "top_k": self.top_k,
            "encoding": self.encoding,
            "score_threshold": self.score_threshold,
            "max_detections": self.max_detections,
        }
        return {name: value for name, value in values.items() if value is not None}

    @property
    def path(self) -> str:
        return f"/v1/models/{quote(self.model, safe='')}:predict"


def classify(client: TierClient, job: Job, batch: Sequence[Input]) -> list[Line]:
    """One line per input of ``batch`` (all URLs or all files); raises TierUnreachable, Stopped."""
    if batch[0].is_url:
        return _lines(job, batch, client.post(job.path, *url_body([i.source for i in batch], job.fields())))
    files: list[tuple[Input, bytes]] = []
    lines: list[Line] = []
    for item in batch:
        try:
            files.append((item, _read(item, job.max_upload_bytes)))
        except _LocalError as exc:
            lines.append(error_line(job.model, None, item.source, exc.code, exc.message))
    for group in _by_size(files, job.max_upload_bytes):
        answer = client.post(job.path, *upload_body(group, job.fields()))
        if answer.status == 413 and len(group) > 1:
            # Together over the tier's body limit, which each alone may be under: send them one by one.
            lines += [line for item, _ in group for line in classify(client, job, [item])]
        else:
            lines += _lines(job, [item for item, _ in group], answer)
    return lines


def _by_size(files: list[tuple[Input, bytes]], budget: int | None) -> list[list[tuple[Input, bytes]]]:
    """Consecutive groups of at most ``budget`` bytes (a bigger file alone): big photos go up in fewer at a time.

    The tier refuses a body over its limit as soon as the headers say so and closes the connection, which a
    client still sending the body sees as a failed connection. Its body limit is not announced; its per-file
    limit is, and a body limit below that would refuse files the tier says it takes.
    """
    groups: list[list[tuple[Input, bytes]]] = []
    size = 0
    for file in files:
        if not groups or (budget is not None and size + len(file[1]) > budget):
            groups.append([])
            size = 0
        groups[-1].append(file)
        size += len(file[1])
    return groups


def url_body(urls: Sequence[str], fields: Mapping[str, Any]) -> tuple[bytes, str]:
    document: dict[str, Any] = {"instances": [{"url": url} for url in urls], **fields}
    return json.dumps(document).encode(), "application/json"


def upload_body(files: Sequence[tuple[Input, bytes]], fields: Mapping[str, Any]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [_part(boundary, f'name="{name}"', str(value).encode()) for name, value in fields.items()]
    for item, data in files:
        filename = Path(item.source).name.replace('"', "%22").replace("\r", "").replace("\n", "")
        parts.append(_part(boundary, f'name="image"; filename="{filename}"', data, "application/octet-stream"))
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _part(boundary: str, disposition: str, data: bytes, content_type: str | None = None) -> bytes:
    head = f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + data + b"\r\n"


class _LocalError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _read(item: Input, max_bytes: int | None) -> bytes:
    path = Path(item.source)
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise _LocalError("payload_too_large", f"the file is {size} bytes; the tier takes at most {max_bytes}")
        return path.read_bytes()
    except OSError as exc:
        raise _LocalError("file_unreadable", f"cannot read the file: {exc.strerror or exc}") from exc


def _lines(job: Job, batch: Sequence[Input], answer: Answer) -> list[Line]:
    predictions = answer.document.get("predictions") if isinstance(answer.document, dict) else None
    if answer.status != 200 or not isinstance(predictions, list) or len(predictions) != len(batch):
        code, message = answer.error() if answer.status != 200 else ("bad_answer", "the tier's answer is not readable")
        return [error_line(job.model, None, item.source, code, message) for item in batch]
    version = (answer.document.get("model") or {}).get("version")
    return [_line(job.model, version, item.source, p) for item, p in zip(batch, predictions, strict=True)]


def _line(model: str, version: int | None, source: str, prediction: Any) -> Line:
    """The tier's answer for one input (``classes``, an ``embedding``, ``outputs``, or ``error``) under our source."""
    if not isinstance(prediction, dict) or not prediction.keys() - {"source"}:
        return error_line(model, version, source, "bad_answer", "the tier's answer for this input is not readable")
    return {
        "source": source,
        "model": model,
        "version": version,
        **{k: v for k, v in prediction.items() if k != "source"},
    }


def error_line(model: str, version: int | None, source: str, code: str, message: str) -> Line:
    return {"source": source, "model": model, "version": version, "error": {"code": code, "message": message}}
