"""Read a PyTorch ``state_dict`` checkpoint (.pth) into numpy arrays without torch.

Both layouts ``torch.save`` has used are handled:

* legacy (before torch 1.6): several pickles back to back (magic number, protocol version,
  system info, the object, the list of storage keys), then every storage's raw bytes, each
  preceded by its element count as a little-endian int64;
* zip (torch 1.6 and later): ``<prefix>/data.pkl`` with the object and ``<prefix>/data/<key>``
  with each storage's raw bytes.

The object pickle refers to storages through persistent ids and rebuilds tensors by calling
``torch._utils._rebuild_tensor_v2``. The unpickler below resolves only a fixed table of
globals (tensor rebuilders, storage type markers, ``OrderedDict``) to local stand-ins and
refuses every other one, so a checkpoint can never run code of its choosing.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointError(ValueError):
    """The file is not a checkpoint this reader understands, or it asks for a forbidden global."""


@dataclass(frozen=True)
class StorageType:
    """Stand-in for ``torch.<X>Storage`` classes: only the element type matters."""

    name: str
    dtype: np.dtype[Any]


@dataclass
class StorageRef:
    """A storage named by a persistent id; ``data`` is filled once its bytes are read."""

    key: str
    dtype: np.dtype[Any]
    numel: int
    data: np.ndarray[Any, Any] | None = None
    view: tuple[StorageRef, int] | None = None

    def array(self) -> np.ndarray[Any, Any]:
        """The storage's elements as a flat array."""
        if self.view is not None:
            root, offset = self.view
            return root.array()[offset : offset + self.numel]
        if self.data is None:
            raise CheckpointError(f"storage {self.key!r} was never read")
        return self.data


@dataclass(frozen=True)
class TensorRef:
    """A tensor whose storage may not have been read yet (legacy files put the bytes last)."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def to_numpy(self) -> np.ndarray[Any, Any]:
        """Copy the strided view out of the storage into a C-contiguous array."""
        flat = self.storage.array()
        if not self.shape:
            return flat[self.offset : self.offset + 1].reshape(()).copy()
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.shape,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage: StorageRef, offset: int, shape: Any, stride: Any, *_: Any) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise CheckpointError("tensor rebuilt from something that is not a storage")
    return TensorRef(storage, int(offset), tuple(int(d) for d in shape), tuple(int(s) for s in stride))


def _rebuild_parameter(data: TensorRef, *_: Any) -> TensorRef:
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that knows a handful of torch globals and refuses every other one."""

    def __init__(self, file: IO[bytes], load_storage: Callable[[tuple[Any, ...]], StorageRef]) -> None:
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(f"checkpoint refers to a forbidden global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
            raise CheckpointError(f"unsupported persistent id {pid!r}")
        return self._load_storage(pid)


def _storage_dtype(storage_type: Any) -> np.dtype[Any]:
    if not isinstance(storage_type, StorageType):
        raise CheckpointError(f"unsupported storage type {storage_type!r}")
    return storage_type.dtype


def _as_str(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


class _LegacyStorages:
    """Persistent-id table of a legacy file: storages are declared first, read at the end."""

    def __init__(self) -> None:
        self.by_key: dict[str, StorageRef] = {}

    def load(self, pid: tuple[Any, ...]) -> StorageRef:
        _, storage_type, root_key, _location, numel, view_metadata = pid
        key = _as_str(root_key)
        root = self.by_key.setdefault(key, StorageRef(key, _storage_dtype(storage_type), int(numel)))
        if view_metadata is None:
            return root
        view_key, offset, view_numel = view_metadata
        return StorageRef(_as_str(view_key), root.dtype, int(view_numel), view=(root, int(offset)))

    def read_data(self, f: IO[bytes], keys: list[Any]) -> None:
        for key in keys:
            storage = self.by_key[_as_str(key)]
            (numel,) = struct.unpack("<q", f.read(8))
            raw = f.read(numel * storage.dtype.itemsize)
            if len(raw) != numel * storage.dtype.itemsize:
                raise CheckpointError(f"storage {storage.key!r} is truncated")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)


def _load_legacy(f: IO[bytes]) -> Any:
    if pickle.load(f) != LEGACY_MAGIC_NUMBER:
        raise CheckpointError("not a torch checkpoint: bad magic number")
    pickle.load(f)  # protocol version
    sys_info = pickle.load(f)
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise CheckpointError("big-endian checkpoints are not supported")
    storages = _LegacyStorages()
    result = _RestrictedUnpickler(f, storages.load).load()
    storages.read_data(f, pickle.load(f))
    return result


def _zip_prefix(archive: zipfile.ZipFile) -> str:
    for name in archive.namelist():
        if name.endswith("/data.pkl"):
            return name[: -len("data.pkl")]
    raise CheckpointError("zip checkpoint without data.pkl")


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        prefix = _zip_prefix(archive)
        if f"{prefix}byteorder" in archive.namelist() and archive.read(f"{prefix}byteorder") != b"little":
            raise CheckpointError("big-endian checkpoints are not supported")

        def load_storage(pid: tuple[Any, ...]) -> StorageRef:
            _, storage_type, key, _location, numel = pid
            dtype = _storage_dtype(storage_type)
            data = np.frombuffer(archive.read(f"{prefix}data/{_as_str(key)}"), dtype=dtype)
            return StorageRef(_as_str(key), dtype, int(numel), data=data)

        with archive.open(f"{prefix}data.pkl") as pkl:
            return _RestrictedUnpickler(io.BytesIO(pkl.read()), load_storage).load()


def _materialise(obj: Any) -> dict[str, np.ndarray[Any, Any]]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, not a state_dict")
    state = obj.get("state_dict", obj)
    return {str(k): v.to_numpy() for k, v in state.items() if isinstance(v, TensorRef)}


def load_state_dict(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    """Load a .pth ``state_dict`` as ``{name: array}`` in the tensors' own dtypes and shapes."""
    if zipfile.is_zipfile(path):
        return _materialise(_load_zip(path))
    with open(path, "rb") as f:
        return _materialise(_load_legacy(f))
