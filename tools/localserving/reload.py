"""Runtime config changes, as TF Serving makes them: HandleReloadConfigRequest and the config file poll.

Both go through ``ConfigReloader.reload``, localserving's ``ServerCore::ReloadConfig``
(tensorflow_serving/model_servers/server_core.cc): the new ModelConfigList is checked first, and a config
that fails a check changes nothing; then labels, removed models, policies and base paths move to it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from tools.localserving.config import ConfigError, ModelConfig, models_from_proto, read_model_server_config
from tools.localserving.errors import FailedPrecondition, InvalidArgument, ServingError, Unknown
from tools.localserving.models import ModelSet, PeriodicThread, ServedModel, VersionState, versions_to_serve

log = logging.getLogger("localserving")


class ConfigReloader:
    """Moves the served models to a new ModelServerConfig, one reload at a time."""

    def __init__(self, models: ModelSet, allow_unavailable_labels: bool) -> None:
        self._models = models
        self._allow_unavailable_labels = allow_unavailable_labels
        self._lock = threading.Lock()  # ServerCore's config_mu_: one reload at a time, loads included

    def reload(self, config: Any, source: str) -> bool:
        """Serve the models of ModelServerConfig ``config``; returns whether anything changed.

        Raises a ServingError with TF Serving's code, serving untouched: INVALID_ARGUMENT for a config TF
        Serving refuses and for a missing base path, NOT_FOUND for a model with no version to serve,
        FAILED_PRECONDITION for a label on a version that is not available. UNKNOWN if a model the config
        adds did not become available; the rest of the config is applied then, as in TF Serving.
        """
        try:
            configs = models_from_proto(config, source)
        except ConfigError as exc:
            raise InvalidArgument(str(exc)) from None
        with self._lock:
            self._check(configs)
            before = self._models.configs()
            if configs == before:
                return False
            added = self._models.apply(configs)
        log.info("reloaded the model config from %s: %s", source, describe_change(before, configs))
        _raise_if_unavailable(added)
        return True

    def _check(self, configs: Sequence[ModelConfig]) -> None:
        for config in configs:
            current = self._models.get(config.name)
            if current is None or (current.config.base_path, current.config.policy) != (
                config.base_path,
                config.policy,
            ):
                versions_to_serve(config)
            available = current.available().keys() if current else ()
            labels = current.config.labels if current else {}
            check_labels(config, available, labels, self._allow_unavailable_labels)


def check_labels(
    config: ModelConfig, available: Collection[int], current_labels: Mapping[str, int], allow_unavailable: bool
) -> None:
    """TF Serving's ServerCore::UpdateModelVersionLabelMap: each label must name a version available now.

    Now means before this reload loads anything, so a version must be loaded by one reload before another
    can label it. With --allow_version_labels_for_unavailable_models a new label, or one that keeps its
    version, may name any version; moving an existing label still needs the version to be available.
    """
    for label, version in sorted(config.labels.items()):
        moved = current_labels.get(label, version) != version
        if version not in available and (moved or not allow_unavailable):
            raise FailedPrecondition(
                f"Request to assign label to version {version} of model {config.name}, which is not currently "
                f"available for inference (label {label!r}; available versions: {sorted(available)})"
            )


def describe_change(before: Sequence[ModelConfig], after: Sequence[ModelConfig]) -> str:
    """``added [a], removed [b], changed [c]`` for the log."""
    old = {config.name: config for config in before}
    new = {config.name: config for config in after}
    added = sorted(new.keys() - old.keys())
    removed = sorted(old.keys() - new.keys())
    changed = sorted(name for name in new.keys() & old.keys() if new[name] != old[name])
    return f"added {added}, removed {removed}, changed {changed}"


def _raise_if_unavailable(added: Sequence[ServedModel]) -> None:
    """ServerCore::WaitUntilModelsAvailable: a model the reload added must have a version available."""
    failed = [model for model in added if not model.available()]
    if failed:
        details = "".join(f"{{{_failure(model)}}}, " for model in failed)
        raise Unknown(f"{len(failed)} model(s) did not become available: {{{details}}}")


def _failure(model: ServedModel) -> str:
    ended = {v: s for v, s in model.statuses().items() if s.state is VersionState.END and s.error_message}
    if not ended:
        return f"{{name: {model.name}}}"
    version = max(ended)
    return f"{{name: {model.name} version: {version}}} due to error: {ended[version].error_message}"


class ConfigFilePoller(PeriodicThread):
    """Re-reads ``--model_config_file`` every ``interval`` seconds and reloads it, on a daemon thread.

    As TF Serving's Server::PollFilesystemAndReloadConfig: the file is applied at every poll, changed or
    not (a config sent by HandleReloadConfigRequest lasts until the next poll); a file that cannot be read
    or parsed, or that the reload refuses, is logged and changes nothing; a file with no config in it is
    no change. Each error is logged once, until a poll ends differently.
    """

    name = "localserving-config-poller"
    failure = "polling the model config file failed"

    def __init__(self, reloader: ConfigReloader, path: Path, interval: float) -> None:
        super().__init__(interval)
        self._reloader = reloader
        self._path = path
        self._last_error: str | None = None

    def tick(self) -> None:
        self.poll()

    def poll(self) -> None:
        """Read the file once and reload it; log what went wrong, if it is news."""
        error = self._reload()
        if error is not None and error != self._last_error:
            log.error("%s", error)
        self._last_error = error

    def _reload(self) -> str | None:
        try:
            config = read_model_server_config(self._path)
        except ConfigError as exc:
            return f"Failed to read ModelServerConfig file: {exc}"
        if config.WhichOneof("config") is None:
            return None  # ServerCore::ReloadConfig: "Taking no action for empty config."
        try:
            self._reloader.reload(config, str(self._path))
        except ServingError as exc:
            return f"PollFilesystemAndReloadConfig failed to ReloadConfig: {exc.code.name}: {exc.message}"
        return None
