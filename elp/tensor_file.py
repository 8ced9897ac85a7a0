"""Read a safetensors file's tensors as views of the bytes already in memory.

``safetensors.torch.load(data)`` copies every tensor out of ``data`` before the caller copies it
again into a module, so loading a set held the file's bytes, a parsed copy and the module's own
weights at once: three times the set's tensors (+610 MB for a 202 MB Whisper decoder set). The
views here cost nothing; the module's ``load_state_dict`` copies from them, so the peak is two
times. The views share the caller's buffer (read-only ``bytes`` included): copy from them, never
write to them, and do not keep them once the buffer is gone.

The checks are safetensors' own: a header that is a JSON object of at most 100 MB, known dtypes,
offsets that tile the data area exactly (no gap, overlap or byte past the end), and each tensor's
byte length equal to its shape times its element size. Anything else raises ``ValueError``.
"""

from __future__ import annotations

import math
import sys
import warnings

import torch

from elp.adapter_files import read_safetensors_header

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64,
}
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}

# torch warns (once) that a view of read-only ``bytes`` could be written through; these views are only read
warnings.filterwarnings("ignore", message="The given buffer is not writable", category=UserWarning,
                        module=r"elp\.tensor_file")


def parse_safetensors(data: bytes | bytearray | memoryview) -> dict[str, torch.Tensor]:
    """name -> tensor viewing ``data`` (no copy on little-endian machines)."""
    data = memoryview(data).cast("B")
    header, data_start = read_safetensors_header(data)
    entries = _checked_entries(header, len(data) - data_start)
    tensors = {}
    for name, (dtype, shape, begin, end) in entries.items():
        if begin == end:  # frombuffer refuses an empty buffer
            try:
                tensors[name] = torch.empty(shape, dtype=dtype)
            except (RuntimeError, TypeError, OverflowError) as exc:  # sizes past int64, even with a zero among them
                raise ValueError(f"{name}: shape {shape} cannot be a tensor: {exc}") from exc
            continue
        tensor = torch.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=data_start + begin)
        if sys.byteorder == "big":  # the format is little-endian; swapping copies
            tensor = torch.from_numpy(tensor.numpy().byteswap())
        tensors[name] = tensor.reshape(shape)
    return tensors


def _checked_entries(header: dict, data_len: int) -> dict[str, tuple[torch.dtype, list[int], int, int]]:
    """name -> (dtype, shape, begin, end), every rule checked; offsets relative to the data area."""
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise ValueError("__metadata__ must map strings to strings")
    entries = {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
            raise ValueError(f"{name}: an entry needs exactly {sorted(_ENTRY_KEYS)}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPES:
            raise ValueError(f"{name}: unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
            raise ValueError(f"{name}: shape must be a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
            raise ValueError(f"{name}: data_offsets must be [begin, end]")
        begin, end = offsets
        if end < begin or end - begin != math.prod(shape) * _DTYPES[dtype].itemsize:
            raise ValueError(f"{name}: {end - begin} bytes for shape {shape} of {dtype}")
        entries[name] = (_DTYPES[dtype], shape, begin, end)
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: (item[1][2], item[1][3])):
        if begin != position:
            raise ValueError(f"{name}: offsets leave a gap or overlap at byte {position}")
        position = end
    if position != data_len:
        raise ValueError(f"tensors cover {position} of the {data_len} data bytes")
    return entries


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
