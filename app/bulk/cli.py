"""``imagegate classify PATH|URLS.txt``: the command line, the checks before a run, the run and its exit code."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from app.bulk import PROG
from app.bulk.inputs import InputError, Inputs, read_inputs
from app.bulk.output import OutputError, ResultWriter, open_output
from app.bulk.predict import Job, Line, classify
from app.bulk.progress import make_progress
from app.bulk.run import Batch, Tally, batches, run_batches, summary
from app.bulk.transport import RetryPolicy, TierClient, TierUnreachable

EXIT_OK = 0
EXIT_FAILED = 1  # the run ended, and some inputs have an error line
EXIT_USAGE = 2  # a wrong command line, an unreadable input or an output that cannot be used; nothing sent
EXIT_UNREACHABLE = 3  # no tier at --server (or it was lost during the run: --resume finishes it)
EXIT_NO_MODEL = 4  # the tier does not serve --model
EXIT_INTERRUPTED = 130  # Ctrl-C: --resume finishes it
CHECK_RETRIES = 2


class Stop(Exception):
    """Ends the command before the run with a message and an exit code."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Options:
    """The command line, parsed. Every default of the command is written here; the parser reads them from here."""

    target: str
    model: str | None = None  # None: the tier's only model
    server: str = "http://127.0.0.1:8080"
    concurrency: int = 8  # requests in flight
    batch: int = 8  # images per request, at most the tier's max_images_per_request
    output: Path | None = None  # None: stdout
    top_k: int | None = None  # None: the model's
    encoding: str | None = None  # how embeddings are written: list or base64; None: the tier's (lists)
    score_threshold: float | None = None  # a detection model's, for every image; None: the model's
    max_detections: int | None = None  # a detection model's boxes per image; None: the model's
    resume: bool = False
    limit: int | None = None
    retries: int = 10  # of a transient failure: no connection, 503 or 504
    timeout: float = 60.0  # seconds to wait for one answer
    progress_every: float = 10.0  # seconds between plain progress lines


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(prog=PROG, description="Classify a folder of images or a list of URLs.")
    parser.add_argument(
        "target", metavar="PATH|URLS.txt", help="a folder, an image, or a list of URLs and paths (- for stdin)"
    )
    parser.add_argument("--model", help="the model to use (default: the tier's only model)")
    parser.add_argument("--server", help="the tier (default %(default)s)")
    parser.add_argument("--concurrency", type=_at_least(1), help="requests in flight (default %(default)s)")
    parser.add_argument("--batch", type=_at_least(1), help="images per request (default %(default)s)")
    parser.add_argument("-o", "--output", type=Path, help="results, one JSON line per input (default: stdout)")
    parser.add_argument("--top-k", type=_at_least(1), help="classes per image (default: the model's)")
    parser.add_argument(
        "--encoding",
        choices=("list", "base64"),
        help="an embedding model's vectors as JSON lists or base64 of little-endian float32 (default: lists)",
    )
    parser.add_argument(
        "--score-threshold",
        type=_fraction,
        help="a detection model's: boxes scoring at or below it are left out (0 to 1; default: the model's)",
    )
    parser.add_argument(
        "--max-detections", type=_at_least(1), help="a detection model's boxes per image (default: the model's)"
    )
    parser.add_argument("--resume", action="store_true", help="skip the inputs already in --output, append the rest")
    parser.add_argument("--limit", type=_at_least(0), help="stop after this many inputs")
    parser.add_argument("--retries", type=_at_least(0), help="retries of a transient failure (default %(default)s)")
    parser.add_argument("--timeout", type=float, help="seconds to wait for one answer (default %(default)g)")
    parser.add_argument(
        "--progress-every", type=float, help="seconds between plain progress lines (default %(default)g)"
    )
    parser.set_defaults(**{f.name: f.default for f in fields(Options) if f.default is not MISSING})
    options = Options(**vars(parser.parse_args(argv)))
    if options.resume and options.output is None:
        parser.error("--resume needs -o/--output")
    return options


def _at_least(low: int) -> Any:
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < low:
            raise argparse.ArgumentTypeError(f"expected an integer of at least {low}, not {text!r}")
        return int(text)

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, not {text!r}")
    return value


@dataclass(frozen=True)
class TierInfo:
    models: list[str]
    max_images: int | None
    max_upload_bytes: int | None


def tier_info(client: TierClient) -> TierInfo:
    """The models and request limits the tier announces (GET /v1/models)."""
    # Few retries: a tier that is not there should be said at once, one that restarts gets a moment.
    answer = client.get("/v1/models", retries=min(client.policy.retries, CHECK_RETRIES))
    document = answer.document if isinstance(answer.document, dict) else {}
    models = document.get("models")
    if answer.status != 200 or not isinstance(models, list):
        raise Stop(EXIT_UNREACHABLE, f"{client.base_url} is not an imagegate tier (GET /v1/models: {answer.status})")
    limits = document.get("limits") or {}
    names = [str(m.get("name")) for m in models if isinstance(m, dict)]
    return TierInfo(names, limits.get("max_images_per_request"), limits.get("max_upload_bytes"))


def choose_model(requested: str | None, served: list[str], server: str) -> str:
    if requested is None and len(served) == 1:
        return served[0]
    if requested is None:
        raise Stop(EXIT_USAGE, f"the tier serves {', '.join(served) or 'no model'}: choose one with --model")
    if requested not in served:
        raise Stop(EXIT_NO_MODEL, f"model_not_found: {server} serves no model {requested!r} ({', '.join(served)})")
    return requested


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """The ``imagegate classify`` command; the streams are the process's unless given (tests give their own)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    err = stderr or sys.stderr
    try:
        return _classify(args, stdin or sys.stdin, stdout or sys.stdout, err)
    except Stop as exc:
        print(f"{PROG}: {exc}", file=err)
        return exc.exit_code
    except KeyboardInterrupt:  # before the run began: nothing written
        return EXIT_INTERRUPTED


def _classify(args: Options, stdin: TextIO, stdout: TextIO, err: TextIO) -> int:
    try:
        inputs = read_inputs(args.target, stdin)
        client = TierClient(args.server, args.timeout, RetryPolicy(retries=args.retries))
    except (InputError, ValueError) as exc:
        raise Stop(EXIT_USAGE, str(exc)) from exc
    try:
        return _check_then_run(client, inputs, args, stdout, err)
    finally:
        client.close()


def _check_then_run(client: TierClient, inputs: Inputs, args: Options, stdout: TextIO, err: TextIO) -> int:
    try:
        info = tier_info(client)
    except TierUnreachable as exc:
        raise Stop(EXIT_UNREACHABLE, str(exc)) from exc
    model = choose_model(args.model, info.models, client.base_url)
    job = Job(model, args.top_k, info.max_upload_bytes, args.encoding, args.score_threshold, args.max_detections)
    try:
        out, already = open_output(args.output, args.resume) if args.output else (stdout, set())
    except OutputError as exc:
        raise Stop(EXIT_USAGE, str(exc)) from exc
    pending = [item for item in inputs.items if item.source not in already]
    _notes(inputs, len(inputs.items) - len(pending), args.output, err)
    todo = pending[: args.limit]
    try:
        size = min(args.batch, info.max_images or args.batch)
        exit_code, done = _run(client, job, batches(todo, size), len(todo), args, (out, err))
    finally:
        if out is not stdout:
            out.close()
    if len(pending) > done:
        print(f"{PROG}: {_count(len(pending) - done, 'input')} not done: run again with --resume to finish", file=err)
    return exit_code


def _notes(inputs: Inputs, skipped: int, output: Path | None, err: TextIO) -> None:
    if inputs.not_images:
        files, first = _count(len(inputs.not_images), "file"), inputs.not_images[0]
        print(f"{PROG}: left out {files} named like images, not images: {first}", file=err)
    if inputs.duplicates:
        print(f"{PROG}: {_count(inputs.duplicates, 'input')} listed more than once, sent once", file=err)
    if skipped:
        print(f"{PROG}: {_count(skipped, 'input')} in {output} already", file=err)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _run(
    client: TierClient,
    job: Job,
    todo: Iterable[Batch],
    total: int,
    args: Options,
    streams: tuple[TextIO, TextIO],
) -> tuple[int, int]:
    """The run itself, then its summary; the exit code and the inputs done."""
    out, err = streams
    writer, tally = ResultWriter(out), Tally()
    progress = make_progress(err, total, args.progress_every)

    def finished(lines: list[Line]) -> None:
        for line in lines:
            writer.write(line)
        progress.advance(len(lines), sum(tally.count(line) for line in lines))

    started, exit_code, stopped_by = time.monotonic(), EXIT_OK, ""
    try:
        run_batches(partial(classify, client, job), todo, args.concurrency, finished)
    except TierUnreachable as exc:
        exit_code, stopped_by = EXIT_UNREACHABLE, f"lost the tier: {exc}"
    except KeyboardInterrupt:
        exit_code, stopped_by = EXIT_INTERRUPTED, "interrupted"
    finally:
        client.stopped.set()  # workers abandoned mid-wait stop instead of retrying
        progress.close()
    if stopped_by:
        print(f"{PROG}: {stopped_by}", file=err)
    print(f"{PROG}: {summary(tally, time.monotonic() - started, client.retried)}", file=err)
    return exit_code or (EXIT_FAILED if tally.failed else EXIT_OK), tally.done
