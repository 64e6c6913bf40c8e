"""The .pth reader on the real torchvision checkpoint and on small hand-made ones (no torch, no TF)."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tools.modelbuild.package_data import mobilenet_v2_weights_path
from tools.modelbuild.torch_checkpoint import LEGACY_MAGIC_NUMBER, CheckpointError, load_state_dict


def test_torchvision_mobilenet_v2_shapes() -> None:
    state = load_state_dict(mobilenet_v2_weights_path())
    assert state["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert state["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)
    assert state["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert state["classifier.1.weight"].shape == (1000, 1280)
    assert state["classifier.1.bias"].shape == (1000,)
    assert state["classifier.1.weight"].dtype == np.float32
    assert state["features.0.1.num_batches_tracked"].dtype == np.int64
    assert all(np.isfinite(v).all() for v in state.values())


Shape = tuple[int, ...]


# Stand-ins that pickle under this module's name; _torch_names() rewrites them to torch's.
class FloatStorage:
    pass


def _rebuild_tensor_v2(*args: Any) -> None:
    raise AssertionError("never called: only its name is pickled")


class _Storage:
    def __init__(self, key: str, data: np.ndarray[Any, Any]) -> None:
        self.key = key
        self.data = data


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, shape: Shape, stride: Shape) -> None:
        hooks: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.args = (storage, offset, shape, stride, False, hooks)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_tensor_v2, self.args)


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, legacy: bool) -> None:
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj: Any) -> Any:
        if not isinstance(obj, _Storage):
            return None
        pid = ("storage", FloatStorage, obj.key, "cpu", obj.data.size)
        return (*pid, None) if self.legacy else pid


def _torch_names(data: bytes) -> bytes:
    module = _rebuild_tensor_v2.__module__
    data = data.replace(f"c{module}\n_rebuild_tensor_v2\n".encode(), b"ctorch._utils\n_rebuild_tensor_v2\n")
    return data.replace(f"c{module}\nFloatStorage\n".encode(), b"ctorch\nFloatStorage\n")


def _pickle_state(state: dict[str, _Tensor], legacy: bool) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, legacy).dump(collections.OrderedDict(state))
    return _torch_names(buffer.getvalue())


STORAGE = _Storage("7", np.arange(10, dtype=np.float32))
# A strided, offset view: the transpose of storage[1:7] seen as 2x3.
STATE = {"bias": _Tensor(STORAGE, 0, (2,), (1,)), "weight.t": _Tensor(STORAGE, 1, (3, 2), (1, 3))}
EXPECTED = {"bias": np.array([0.0, 1.0]), "weight.t": np.arange(1, 7, dtype=np.float32).reshape(2, 3).T}


def _write_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _pickle_state(STATE, legacy=False))
        archive.writestr("archive/byteorder", "little")
        archive.writestr(f"archive/data/{STORAGE.key}", STORAGE.data.tobytes())


def _write_legacy(path: Path) -> None:
    with open(path, "wb") as f:
        for header in (LEGACY_MAGIC_NUMBER, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(_pickle_state(STATE, legacy=True))
        pickle.dump([STORAGE.key], f, protocol=2)
        f.write(struct.pack("<q", STORAGE.data.size) + STORAGE.data.tobytes())


@pytest.mark.parametrize("write", [_write_zip, _write_legacy], ids=["zip", "legacy"])
def test_reads_strided_tensors(tmp_path: Path, write: Any) -> None:
    path = tmp_path / "state.pth"
    write(path)
    state = load_state_dict(path)
    assert state.keys() == EXPECTED.keys()
    for name, expected in EXPECTED.items():
        np.testing.assert_array_equal(state[name], expected)
        assert state[name].flags.c_contiguous


def test_refuses_other_globals(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    # os.system("true") as a legacy checkpoint's object pickle.
    evil = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R."
    with open(path, "wb") as f:
        for header in (LEGACY_MAGIC_NUMBER, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(evil)
    with pytest.raises(CheckpointError, match=r"forbidden global os\.system"):
        load_state_dict(path)


def test_refuses_files_that_are_not_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "not.pth"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="magic number"):
        load_state_dict(path)
