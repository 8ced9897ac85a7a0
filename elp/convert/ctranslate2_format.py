"""Read CTranslate2's ``model.bin`` (binary version 6) without the ``ctranslate2`` package: every variable
as a torch tensor, aliases kept apart, corruption and truncation named with their offsets. The Whisper
converter (:mod:`elp.convert.ctranslate2_whisper`) maps what this reads onto ``transformers`` names.

``model.bin`` layout (all integers little-endian; a *string* is a uint16 byte count that
includes a trailing NUL, the UTF-8 bytes, then the NUL)::

    uint32 binary_version (6) | string spec_name | uint32 spec_revision | uint32 n_variables
    n_variables x [string name | uint8 rank | rank x uint32 dim | uint8 dtype_id
                   | uint32 n_bytes | n_bytes raw data (row-major)]
    uint32 n_aliases | n_aliases x [string alias | string target_name]

dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SUPPORTED_BINARY_VERSION = 6

# dtype id -> (name, numpy dtype used to read the raw bytes). bfloat16 is read as uint16 bits.
_DTYPES: dict[int, tuple[str, np.dtype]] = {
    0: ("float32", np.dtype("<f4")),
    1: ("int8", np.dtype("i1")),
    2: ("int16", np.dtype("<i2")),
    3: ("int32", np.dtype("<i4")),
    4: ("float16", np.dtype("<f2")),
    5: ("bfloat16", np.dtype("<u2")),
}
_MAX_RANK = 8


class ModelBinError(ValueError):
    """A ``model.bin`` that cannot be read: truncated, corrupt, or not a supported version."""


@dataclass
class CTranslate2Model:
    """The variables of a CTranslate2 model, with aliases kept separate so they can be resolved."""

    binary_version: int
    spec_name: str
    revision: int
    variables: dict[str, torch.Tensor]
    aliases: dict[str, str]

    def has(self, name: str) -> bool:
        return name in self.variables or name in self.aliases

    def get(self, name: str) -> torch.Tensor:
        """Return a variable (following aliases), dequantised to float32 if it was quantised."""
        seen: set[str] = set()
        while name in self.aliases:
            if name in seen:
                raise ModelBinError(f"alias cycle at {name!r}")
            seen.add(name)
            name = self.aliases[name]
        if name not in self.variables:
            raise ModelBinError(f"variable {name!r} missing from the {self.spec_name} model")
        value = self.variables[name]
        scale = self.variables.get(f"{name}_scale")
        if scale is not None:  # int8/int16 quantisation stores value * scale (per row for int8)
            scale = scale.float()
            value = value.float() / (scale.unsqueeze(-1) if scale.dim() == 1 else scale)
        return value

    def scalar(self, name: str) -> int:
        return int(self.get(name).reshape(-1)[0].item())

    def resolve(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name


class _Reader:
    """Bounds-checked cursor over the concatenated file bytes, so corruption gives a clear error."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def take(self, n: int, what: str) -> int:
        start = self.pos
        if start + n > len(self.data):
            raise ModelBinError(
                f"{self.source}: truncated while reading {what}: needs {n} bytes at offset {start}, "
                f"only {len(self.data) - start} left (file size {len(self.data)}). "
                "Is a part of a split model.bin missing, or the download incomplete?"
            )
        self.pos += n
        return start

    def unpack(self, fmt: str, what: str) -> int:
        start = self.take(struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.data, start)[0]

    def string(self, what: str) -> str:
        n = self.unpack("<H", f"length of {what}")
        if n == 0:
            raise ModelBinError(f"{self.source}: corrupt: zero-length string for {what} at {self.pos - 2}")
        start = self.take(n, what)
        raw = self.data[start : start + n]
        if raw[-1] != 0:
            raise ModelBinError(f"{self.source}: corrupt: {what} at offset {start} is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise ModelBinError(f"{self.source}: corrupt: {what} at offset {start} is not UTF-8") from err


def _as_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def read_model_bin(paths: str | Path | Sequence[str | Path]) -> CTranslate2Model:
    """Read a CTranslate2 ``model.bin``; several paths are the parts of one split file, in order."""
    parts = _as_paths(paths)
    if not parts:
        raise ValueError("no model.bin path given")
    for p in parts:
        if not p.is_file():
            raise FileNotFoundError(f"model.bin part not found: {p}")
    data = b"".join(p.read_bytes() for p in parts)
    source = " + ".join(str(p) for p in parts)
    r = _Reader(data, source)

    version = r.unpack("<I", "binary version")
    if version != SUPPORTED_BINARY_VERSION:
        raise ModelBinError(
            f"{source}: unsupported CTranslate2 binary version {version} "
            f"(this reader knows version {SUPPORTED_BINARY_VERSION}); is this a CTranslate2 model.bin?"
        )
    spec_name = r.string("spec name")
    revision = r.unpack("<I", "spec revision")
    n_vars = r.unpack("<I", "variable count")

    variables: dict[str, torch.Tensor] = {}
    for i in range(n_vars):
        name = r.string(f"name of variable {i}")
        rank = r.unpack("<B", f"rank of {name}")
        if rank > _MAX_RANK:
            raise ModelBinError(f"{source}: corrupt: variable {name!r} claims rank {rank}")
        shape = tuple(r.unpack("<I", f"shape of {name}") for _ in range(rank))
        dtype_id = r.unpack("<B", f"dtype of {name}")
        if dtype_id not in _DTYPES:
            raise ModelBinError(f"{source}: corrupt: variable {name!r} has unknown dtype id {dtype_id}")
        dtype_name, np_dtype = _DTYPES[dtype_id]
        n_bytes = r.unpack("<I", f"byte count of {name}")
        count = int(np.prod(shape, dtype=np.int64))
        if n_bytes != count * np_dtype.itemsize:
            raise ModelBinError(
                f"{source}: corrupt: variable {name!r} of shape {shape} {dtype_name} "
                f"declares {n_bytes} bytes, expected {count * np_dtype.itemsize}"
            )
        start = r.take(n_bytes, f"data of {name}")
        array = np.frombuffer(data, dtype=np_dtype, count=count, offset=start).copy().reshape(shape)
        tensor = torch.from_numpy(array)
        if dtype_name == "bfloat16":
            tensor = tensor.view(torch.bfloat16)
        variables[name] = tensor

    n_aliases = r.unpack("<I", "alias count")
    aliases: dict[str, str] = {}
    for i in range(n_aliases):
        alias = r.string(f"alias {i}")
        aliases[alias] = r.string(f"target of alias {alias!r}")
    if r.pos != len(data):
        raise ModelBinError(
            f"{source}: corrupt: {len(data) - r.pos} unexpected bytes after the end of the model "
            f"(offset {r.pos}); were the parts of a split model.bin given in the wrong order?"
        )
    for alias, target in aliases.items():
        if target not in variables and target not in aliases:
            raise ModelBinError(f"{source}: corrupt: alias {alias!r} points to unknown {target!r}")
    return CTranslate2Model(version, spec_name, revision, variables, aliases)
