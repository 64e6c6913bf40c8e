"""Answers to repeated images: the model's output row for an image, kept by a hash of its bytes (off by default).

An entry is found by the image's bytes (BLAKE3: a cryptographic hash, so no client can craft bytes that collide with
someone else's image and plant its own answer under that image; it hashes an 80 KB JPEG in 0.012 ms, where SHA-256
with the CPU's SHA instructions took 0.041 and BLAKE2b 0.075: the hash was a quarter of a hit's CPU in py-spy's
samples), the model (its public name, served name, signature and frozen pre/postprocess settings, hashed once when
the services are built), what answers (the route target the routing step chose and its router's generation, or the
call's version or label: ``Route.key``) and the version that target last answered with. A router's generation moves
on a reset, promote, rollback or a change the status poller sees (``app/routing/router.py``), a model without
routes' when the poller sees its AVAILABLE versions change (``ServedVersions``); a reload empties the cache; a
Predict that answers with another version than the target's last one makes the target's older entries unreachable.

An entry holds every output's row for the image (the full score vector), its geometry and the version that
answered: ``top_k`` and the rest of postprocessing run on every answer, a hit's as a Predict's. Only rows the
model answered are kept; an image that did not decode, or whose outputs the kind refused (NaN), is not.
The cache is bounded by ``cache.max_bytes``, least recently used out first, and its bytes are held in the memory
budget (``app/memory.py``): an entry the budget has no room for now is not kept.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import blake3
import numpy as np

from app.memory import MemoryBudget, Reservation
from app.models import ServedModel
from app.routing.routed import Answered, Route
from processing.errors import ItemError
from processing.geometry import ImageGeometry
from processing.kinds.base import ItemAnswer, ModelOutputs
from processing.prediction import PredictCall
from processing.sniff import ImageBytes

# What an entry costs beyond its arrays: the key's bytes and tuple, the dict's slot, the row's objects.
ENTRY_OVERHEAD_BYTES = 512
DIGEST_BYTES = 16

Key = tuple[bytes, str, int, bytes]  # model, what answers, the version it answered with, the image's digest


@dataclass(frozen=True)
class CachedRow:
    """One image's answer as the model gave it: each output's row, the image's geometry, the version."""

    outputs: Mapping[str, np.ndarray]
    geometry: ImageGeometry | None
    version: int
    nbytes: int


@dataclass
class Found:
    """One request's arrived images against the cache: each one's digest and cached row (None: a miss).

    ``digests`` is None when the cache is off: nothing was hashed, and every image is a miss.
    """

    model: ServedModel
    route: Route
    generation: int  # the cache's, when looked up: a reload since then keeps nothing of this request
    digests: list[bytes | None] | None
    rows: list[CachedRow | None]

    @property
    def hits(self) -> int:
        return sum(row is not None for row in self.rows)

    def missed(self, arrived: list[ImageBytes | ItemError]) -> list[ImageBytes | ItemError]:
        """The arrived images (or their errors) that were not found: what is decoded and sent."""
        if not self.hits:
            return arrived
        return [data for data, row in zip(arrived, self.rows, strict=True) if row is None]

    def missed_items(self) -> range | list[int]:
        """The request's indices of ``missed``'s images, in order."""
        if not self.hits:
            return range(len(self.rows))
        return [i for i, row in enumerate(self.rows) if row is None]

    def answers(self, failures: Sequence[ItemError | None], call: PredictCall) -> list[ItemAnswer | ItemError | None]:
        """Per arrived image: a hit's answer (postprocessed now, with this request's ``top_k`` and detection
        settings), a miss's failure, or None for a miss the Predict answers (its rows come in this order)."""
        if not self.hits:
            return list(failures)
        hits = [row for row in self.rows if row is not None]
        names = self.model.output_names
        tensors = {name: np.stack([row.outputs[name] for row in hits]) for name in names}
        geometries = [row.geometry for row in hits]
        outputs = ModelOutputs(tensors, names, self.model.postprocess, call.top_k, geometries, call.detection)
        answered = iter(self.model.output_kind.postprocess(outputs))
        missed = iter(failures)
        return [next(answered) if row is not None else next(missed) for row in self.rows]

    def version(self) -> int | None:
        """The version a hit's answer came from (None without a hit)."""
        return next((row.version for row in self.rows if row is not None), None)


class AnswerCache:
    """The process's answer cache, one for its life: a reload reconfigures and empties it (``configure``)."""

    def __init__(
        self,
        memory: MemoryBudget,
        on_lookup: Callable[[str, int, int], None] = lambda model, hits, misses: None,
        on_evict: Callable[[int], None] = lambda entries: None,
        on_bytes: Callable[[int], None] = lambda nbytes: None,
    ) -> None:
        self.max_bytes = 0
        self.generation = 0
        self._held: Reservation = memory.open()
        self._entries: OrderedDict[Key, CachedRow] = OrderedDict()
        self._versions: dict[tuple[bytes, str], int] = {}  # what each target last answered with, per model
        self._model_keys: dict[str, bytes] = {}
        self._on_lookup, self._on_evict, self._on_bytes = on_lookup, on_evict, on_bytes

    @property
    def nbytes(self) -> int:
        return self._held.nbytes

    def __len__(self) -> int:
        return len(self._entries)

    def configure(self, max_bytes: int, models: Mapping[str, ServedModel]) -> None:
        """New settings (start or reload): every entry dropped, the models' settings hashed once."""
        self.generation += 1
        self.max_bytes = max_bytes
        self._entries.clear()
        self._versions.clear()
        self._held.release()
        self._on_bytes(0)
        self._model_keys = {name: model_key(model) for name, model in models.items()} if max_bytes else {}

    def find(self, model: ServedModel, route: Route, arrived: Sequence[ImageBytes | ItemError]) -> Found:
        """Each arrived image's cached row for ``route``; with the cache off, nothing is hashed."""
        if not self.max_bytes:
            return Found(model, route, self.generation, None, [None] * len(arrived))
        model_key, target = self._model_keys[model.name], route.key(route.target)
        version = self._versions.get((model_key, target))
        digests: list[bytes | None] = [None if isinstance(data, ItemError) else _digest(data) for data in arrived]
        rows: list[CachedRow | None] = [None] * len(arrived)
        if version is not None:
            for i, digest in enumerate(digests):
                key = (model_key, target, version, digest) if digest is not None else None
                row = self._entries.get(key) if key is not None else None
                if row is not None and key is not None:
                    self._entries.move_to_end(key)
                    rows[i] = row
        hits = sum(row is not None for row in rows)
        self._on_lookup(model.name, hits, sum(d is not None for d in digests) - hits)
        return Found(model, route, self.generation, digests, rows)

    def keep(
        self,
        found: Found,
        failures: Sequence[ItemError | None],
        geometries: Sequence[ImageGeometry | None],
        answered: Answered,
    ) -> None:
        """Keep the answered rows of ``found``'s misses (``failures``: each miss's decode failure, in order)."""
        if found.digests is None or found.generation != self.generation or answered.outputs is None:
            return
        if answered.version is None:
            return
        model_key = self._model_keys[found.model.name]
        self._versions[(model_key, answered.target)] = answered.version
        missed = [digest for digest, row in zip(found.digests, found.rows, strict=True) if row is None]
        sent = [digest for digest, failure in zip(missed, failures, strict=True) if failure is None]
        for i, (digest, answer) in enumerate(zip(sent, answered.rows, strict=True)):
            if digest is None or isinstance(answer, ItemError):
                continue
            outputs = {name: np.array(answered.outputs[name][i]) for name in found.model.output_names}
            nbytes = ENTRY_OVERHEAD_BYTES + sum(array.nbytes for array in outputs.values())
            self._put(
                (model_key, answered.target, answered.version, digest),
                CachedRow(outputs, geometries[i], answered.version, nbytes),
            )

    def _put(self, key: Key, row: CachedRow) -> None:
        if row.nbytes > self.max_bytes or key in self._entries:
            return
        evicted = 0
        while self._held.nbytes + row.nbytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._held.shrink(old.nbytes)
            evicted += 1
        if evicted:
            self._on_evict(evicted)
        if self._held.grow_now(row.nbytes):  # else the requests need the budget now: not kept
            self._entries[key] = row
        self._on_bytes(self._held.nbytes)


def model_key(model: ServedModel) -> bytes:
    """A digest of what makes the model's answers what they are, but for the version: hashed once per start/reload."""
    described = repr(
        (
            model.name,
            model.served_name,
            model.address,
            model.signature,
            model.input_name,
            model.output_names,
            model.preprocess,
            model.postprocess,
            model.input_kind.name,
            model.orientation_input,
        )
    )
    return hashlib.blake2b(described.encode(), digest_size=DIGEST_BYTES).digest()


def _digest(data: ImageBytes) -> bytes:
    return blake3.blake3(data).digest()
