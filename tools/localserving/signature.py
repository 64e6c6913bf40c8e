"""What a signature accepts and returns, and the request checks TF Serving makes against it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tools.localserving.errors import InvalidArgument
from tools.localserving.tensors import BY_NUMPY, Array, DType

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class InputSpec:
    """One input of a signature; ``shape`` is None when the rank is unknown, a dim is None when free."""

    dtype: DType
    shape: tuple[int | None, ...] | None

    def describe_shape(self) -> str:
        if self.shape is None:
            return "<unknown rank>"
        return "[" + ",".join("-1" if size is None else str(size) for size in self.shape) + "]"

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        if self.shape is None:
            return True
        if len(shape) != len(self.shape):
            return False
        return all(want is None or want == got for want, got in zip(self.shape, shape, strict=True))


@dataclass(frozen=True)
class SignatureSpec:
    """A signature's input specs by alias and its output aliases."""

    name: str
    inputs: Mapping[str, InputSpec]
    outputs: tuple[str, ...]

    def check_inputs(self, arrays: Mapping[str, Array]) -> None:
        """InvalidArgument unless ``arrays`` has exactly this signature's inputs, with their dtypes and shapes."""
        if arrays.keys() != self.inputs.keys():
            raise InvalidArgument(self._describe_input_mismatch(arrays.keys()))
        for name, array in arrays.items():
            spec = self.inputs[name]
            if array.dtype != spec.dtype.numpy:
                given = _dtype_of(array)
                raise InvalidArgument(f"input {name!r} must be {spec.dtype.name}, the request sent {given}")
            if not spec.accepts_shape(array.shape):
                raise InvalidArgument(
                    f"input {name!r} has shape {list(array.shape)}, which does not match the signature's "
                    f"{spec.describe_shape()}"
                )

    def select_outputs(self, output_filter: Sequence[str]) -> tuple[str, ...]:
        """The output aliases to answer with: all of them, or those of ``output_filter`` in its order."""
        if not output_filter:
            return self.outputs
        seen: set[str] = set()
        for alias in output_filter:
            if alias not in self.outputs:
                raise InvalidArgument(
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                    f"{{{','.join(sorted(self.outputs))}}}."
                )
            if alias in seen:
                raise InvalidArgument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        return tuple(output_filter)

    def _describe_input_mismatch(self, sent: Iterable[str]) -> str:
        sent_names = sorted(sent)
        wanted = sorted(self.inputs)
        extra = sorted(set(sent_names) - set(wanted))
        missing = sorted(set(wanted) - set(sent_names))
        return (
            f"input size does not match signature: {len(sent_names)}!={len(wanted)} "
            f"len({{{','.join(sent_names)}}}) != len({{{','.join(wanted)}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}."
        )


def _dtype_of(array: Array) -> str:
    known = BY_NUMPY.get(array.dtype)
    return known.name if known else str(array.dtype)
