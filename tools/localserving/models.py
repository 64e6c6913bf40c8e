"""The served models: which versions are loaded, their states, and ModelSpec resolution.

Each model's available versions, and the set of served models itself, are immutable mappings that are
replaced, never changed, so request threads read them without a lock and a request that resolved a
version keeps that Servable (and its TensorFlow objects) alive until it is answered, even if the version
is unloaded or its model removed from the config meanwhile.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import grpc

from tools.localserving.config import ModelConfig
from tools.localserving.errors import InvalidArgument, NotFound, error_for_code

if TYPE_CHECKING:
    from tools.localserving.servable import Servable

log = logging.getLogger("localserving")

Loader = Callable[[str, int, Path], "Servable"]

# TF Serving's max_num_load_retries is 5; a version that keeps failing is left alone until its directory
# disappears and comes back.
MAX_LOAD_ATTEMPTS = 6


class VersionState(enum.IntEnum):
    """ModelVersionStatus.State values."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True)
class VersionStatus:
    state: VersionState
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


def versions_on_disk(base_path: Path) -> dict[int, Path]:
    """The numeric version directories under ``base_path``; other entries (labels.txt, tmp dirs) are ignored."""
    found: dict[int, Path] = {}
    for entry in base_path.iterdir():
        if entry.name.isascii() and entry.name.isdigit() and entry.is_dir():
            found.setdefault(int(entry.name), entry)
    return found


def nothing_to_serve(config: ModelConfig) -> str:
    """Why ``config`` has no version to serve, for start-up and reload errors."""
    found = sorted(versions_on_disk(config.base_path))
    return (
        f"No versions of servable {config.name} found under base path {config.base_path} "
        f"(version directories: {found or 'none'}; {config.policy}). tensorflow_model_server would wait "
        "for one to appear; localserving refuses the config instead."
    )


def versions_to_serve(config: ModelConfig) -> frozenset[int]:
    """The versions ``config`` would serve now: InvalidArgument if its base path is missing, NotFound if none.

    The message of a missing base path is TF Serving's (``PollFileSystemForServable``).
    """
    try:
        if not config.base_path.is_dir():
            raise InvalidArgument(f"Could not find base path {config.base_path} for servable {config.name}")
        served = config.policy.select(versions_on_disk(config.base_path))
    except OSError as exc:
        raise InvalidArgument(f"Cannot read base path {config.base_path} for servable {config.name}: {exc}") from exc
    if not served:
        raise NotFound(nothing_to_serve(config))
    return served


class ServedModel:
    """One configured model: loads and unloads its versions as its base path and config change."""

    def __init__(self, config: ModelConfig, load: Loader) -> None:
        self.config = config
        self._load = load
        self._available: Mapping[int, Servable] = MappingProxyType({})
        self._statuses: dict[int, VersionStatus] = {}
        self._failed_attempts: dict[int, int] = {}
        self._retired = False  # removed from the config: a poll must not load it again
        self._status_lock = threading.Lock()
        self._refresh_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    def available(self) -> Mapping[int, Servable]:
        return self._available

    def statuses(self) -> dict[int, VersionStatus]:
        with self._status_lock:
            return dict(self._statuses)

    def reconfigure(self, config: ModelConfig) -> None:
        """Serve by ``config`` from now on: its labels at once, its policy and base path at the next refresh."""
        with self._refresh_lock:
            self.config = config
            self._retired = False

    def retire(self) -> None:
        """Unload every version: the model left the config. Its statuses stay for GetModelStatus, as in TF Serving."""
        with self._refresh_lock:
            self._retired = True
            self._failed_attempts.clear()
            for version in sorted(self._available):
                self._unload_version(version)

    def refresh(self) -> list[str]:
        """Load newly aspired versions, then unload those no longer aspired; returns load errors."""
        with self._refresh_lock:
            if self._retired:
                return []
            on_disk = versions_on_disk(self.config.base_path)
            aspired = self.config.policy.select(on_disk)
            errors: list[str] = []
            for version in sorted(aspired - self._available.keys()):
                if self._failed_attempts.get(version, 0) < MAX_LOAD_ATTEMPTS:
                    errors += self._load_version(version, on_disk[version])
            self._failed_attempts = {v: n for v, n in self._failed_attempts.items() if v in on_disk}
            self._unload_stale(aspired, on_disk.keys())
            return errors

    def _load_version(self, version: int, path: Path) -> list[str]:
        """Load and publish one version; its error message, if it failed, in a list."""
        self._set_status(version, VersionStatus(VersionState.LOADING))
        try:
            servable = self._load(self.name, version, path)
        except Exception as exc:  # any load failure leaves the other versions serving
            message = f"loading {self.name} version {version} from {path} failed: {exc}"
            log.error("%s", message)
            self._failed_attempts[version] = self._failed_attempts.get(version, 0) + 1
            code = error_for_code(getattr(exc, "error_code", grpc.StatusCode.UNKNOWN.value[0]), "").code
            self._set_status(version, VersionStatus(VersionState.END, code, str(exc)))
            return [message]
        self._publish({**self._available, version: servable})
        self._set_status(version, VersionStatus(VersionState.AVAILABLE))
        return []

    def _unload_stale(self, aspired: frozenset[int], on_disk: Collection[int]) -> None:
        stale = sorted(self._available.keys() - aspired)
        # Keep serving a version whose replacement failed to load, as long as its files are still there.
        replaced = any(version in self._available for version in aspired)
        for version in stale:
            if replaced or version not in on_disk:
                self._unload_version(version)

    def _unload_version(self, version: int) -> None:
        self._set_status(version, VersionStatus(VersionState.UNLOADING))
        self._publish({v: s for v, s in self._available.items() if v != version})
        self._set_status(version, VersionStatus(VersionState.END))
        log.info("unloaded %s version %d", self.name, version)

    def _publish(self, available: dict[int, Servable]) -> None:
        self._available = MappingProxyType(dict(sorted(available.items())))

    def _set_status(self, version: int, status: VersionStatus) -> None:
        with self._status_lock:
            self._statuses[version] = status


class ModelSet:
    """All served models by name; resolves a request's ModelSpec to a Servable; moves to a new config."""

    def __init__(self, models: Sequence[ServedModel], load: Loader) -> None:
        self._models: Mapping[str, ServedModel] = MappingProxyType({model.name: model for model in models})
        self._retired: dict[str, ServedModel] = {}  # removed models, kept for their statuses
        self._load = load
        self._apply_lock = threading.Lock()

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    def get(self, name: str) -> ServedModel | None:
        """The served model ``name``; None if it is not in the current config."""
        return self._models.get(name)

    def configs(self) -> tuple[ModelConfig, ...]:
        return tuple(model.config for model in self._models.values())

    def statuses(self, name: str) -> dict[int, VersionStatus]:
        """Every version of ``name`` ever seen, also after the model left the config (TF Serving keeps them)."""
        model = self._models.get(name) or self._retired.get(name)
        return model.statuses() if model else {}

    def apply(self, configs: Sequence[ModelConfig]) -> list[ServedModel]:
        """Serve exactly ``configs``; returns the models that were not served before.

        In ServerCore::ReloadConfig's order: the new labels take effect at once, removed models are
        unloaded, then versions are loaded and unloaded by each model's new policy and base path (new
        versions before the ones they replace). Versions that stay are not touched, so calls in flight to
        them carry on.
        """
        with self._apply_lock:
            before = self._models
            models: dict[str, ServedModel] = {}
            for config in configs:
                model = before.get(config.name) or self._retired.pop(config.name, None)
                if model is None:
                    model = ServedModel(config, self._load)
                model.reconfigure(config)
                models[config.name] = model
            self._models = MappingProxyType(models)
            for name, model in before.items():
                if name not in models:
                    model.retire()
                    self._retired[name] = model
            self.refresh_all()
            return [model for name, model in models.items() if name not in before]

    def resolve(self, spec: Any) -> Servable:
        """The servable a ModelSpec asks for: by version, by version_label, or the latest loaded."""
        if not spec.name:
            raise InvalidArgument("ModelSpec has no name specified.")
        model = self._models.get(spec.name)
        available = model.available() if model else MappingProxyType({})
        choice = spec.WhichOneof("version_choice")
        if choice is None:
            if not available:
                raise NotFound(f"Servable not found for request: Latest({spec.name})")
            return available[max(available)]
        version = spec.version.value if choice == "version" else self._label_version(model, spec.version_label)
        servable = available.get(version)
        if servable is None:
            raise NotFound(f"Servable not found for request: Specific({spec.name}, {version})")
        return servable

    def refresh_all(self) -> None:
        """One poll of every base path; a failing model is logged and retried next poll."""
        for model in self._models.values():
            try:
                model.refresh()
            except OSError as exc:
                log.warning("cannot read base path of %s: %s", model.name, exc)

    def describe(self) -> str:
        """``name:1+2,...``: each model with its available versions, for the readiness line."""
        return ",".join(
            f"{model.name}:{'+'.join(str(v) for v in model.available())}" for model in self._models.values()
        )

    @staticmethod
    def _label_version(model: ServedModel | None, label: str) -> int:
        version = model.config.labels.get(label) if model else None
        if version is None:
            # TF Serving answers INVALID_ARGUMENT here, not NOT_FOUND.
            raise InvalidArgument(f"Unrecognized servable version label: {label}")
        return version


class PeriodicThread:
    """Runs ``tick`` every ``interval`` seconds on a daemon thread until stopped; a failing tick is logged."""

    name = "localserving-periodic"
    failure = "a periodic task failed"

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.tick()
            except Exception:  # the thread must outlive any one bad tick
                log.exception(self.failure)


class VersionPoller(PeriodicThread):
    """Polls every base path each ``interval`` seconds on a daemon thread, as TF Serving's file source does."""

    name = "localserving-poller"
    failure = "polling model base paths failed"

    def __init__(self, models: ModelSet, interval: float) -> None:
        super().__init__(interval)
        self._models = models

    def tick(self) -> None:
        self._models.refresh_all()
