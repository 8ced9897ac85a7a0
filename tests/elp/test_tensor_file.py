"""The zero-copy safetensors parser: the same tensors as safetensors' own, views of the caller's bytes,
and every malformed header refused (a set's sha256 only proves the file is the one its config names,
not that whoever wrote both was honest)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as reference_load
from safetensors.torch import save

from elp.adapter_files import MAX_HEADER_BYTES, WEIGHTS_NAME
from elp.tensor_file import parse_safetensors

STORE = Path(__file__).resolve().parents[2] / "adapters_store"


def sample_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    floats = torch.randn(3, 5, generator=generator)
    return {
        "f32": floats, "f64": floats.double(), "f16": floats.half(), "bf16": floats.bfloat16(),
        "i64": torch.arange(-4, 4), "i32": torch.arange(7, dtype=torch.int32),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 200, 255], dtype=torch.uint8), "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 4), "odd": torch.randn(1, 3, generator=generator).half(),
    }


def assert_same(parsed: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert parsed.keys() == expected.keys()
    for name, tensor in expected.items():
        assert parsed[name].dtype == tensor.dtype and parsed[name].shape == tensor.shape, name
        assert torch.equal(parsed[name].view(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8)), name


def test_matches_safetensors_bit_for_bit() -> None:
    data = save(sample_tensors(), metadata={"format": "elp-adapter-set"})
    assert_same(parse_safetensors(data), reference_load(data))
    assert_same(parse_safetensors(data), sample_tensors())


def test_tensors_view_the_buffer_without_copying() -> None:
    buffer = bytearray(save({"w": torch.zeros(4)}))
    tensor = parse_safetensors(buffer)["w"]
    buffer[-4:] = struct.pack("<f", 1.5)
    assert tensor.tolist() == [0.0, 0.0, 0.0, 1.5]


@pytest.mark.parametrize("adapter_id", sorted(p.parent.name for p in STORE.glob(f"*/{WEIGHTS_NAME}")))
def test_every_set_in_the_store_parses_as_safetensors_does(adapter_id: str) -> None:
    data = (STORE / adapter_id / WEIGHTS_NAME).read_bytes()
    assert_same(parse_safetensors(data), reference_load(data))


def with_header(header: dict | bytes, data: bytes = b"", declared: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if declared is None else declared) + raw + data


def entry(dtype: str = "F32", shape: list = (2,), offsets: list = (0, 8)) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


MALFORMED = {
    "too short": b"\x01\x00",
    "header past the end": with_header({}, declared=1_000),
    "header over the limit": with_header({}, declared=MAX_HEADER_BYTES + 1),
    "header not JSON": with_header(b"{not json"),
    "header not an object": with_header(b"[1, 2]"),
    "duplicate name": with_header(b'{"a": %s, "a": %s}' % (json.dumps(entry()).encode(),
                                                           json.dumps(entry(offsets=(8, 16))).encode()), bytes(16)),
    "unknown dtype": with_header({"a": entry(dtype="F128")}, bytes(8)),
    "negative dimension": with_header({"a": entry(shape=[-2])}, bytes(8)),
    "boolean dimension": with_header({"a": entry(shape=[True, 2])}, bytes(8)),
    "float offset": with_header({"a": entry(offsets=[0.0, 8])}, bytes(8)),
    "one offset": with_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8]}}, bytes(8)),
    "extra entry key": with_header({"a": entry() | {"stride": [1]}}, bytes(8)),
    "size does not match shape": with_header({"a": entry(shape=[3])}, bytes(8)),
    "end before begin": with_header({"a": entry(shape=[0], offsets=[8, 0])}, bytes(8)),
    "gap": with_header({"a": entry(), "b": entry(offsets=[12, 20])}, bytes(20)),
    "overlap": with_header({"a": entry(), "b": entry(offsets=[4, 12])}, bytes(12)),
    "past the end": with_header({"a": entry(offsets=[0, 8])}, bytes(4)),
    "bytes left over": with_header({"a": entry()}, bytes(12)),
    "metadata not strings": with_header({"__metadata__": {"n": 1}, "a": entry()}, bytes(8)),
    "empty, with a dimension past int64": with_header({"a": entry(shape=[0, 2**63], offsets=[0, 0])}),
    "empty, with sizes whose product overflows": with_header({"a": entry(shape=[2**40, 2**40, 0], offsets=[0, 0])}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_are_refused(case: str) -> None:
    with pytest.raises(ValueError):
        parse_safetensors(MALFORMED[case])


def test_header_padding_and_empty_files_parse() -> None:
    padded = with_header(json.dumps({"a": entry()}).encode() + b"     ", struct.pack("<2f", 1.0, 2.0))
    assert parse_safetensors(padded)["a"].tolist() == [1.0, 2.0]
    assert parse_safetensors(with_header({"__metadata__": {"k": "v"}})) == {}


def test_views_of_read_only_bytes_warn_nothing() -> None:
    """Every warning an error: parsing ``bytes`` (the server's case) says nothing in the server's log."""
    code = ("import torch; from safetensors.torch import save; from elp.tensor_file import parse_safetensors; "
            "print(parse_safetensors(save({'a': torch.ones(2)}))['a'].tolist())")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1.0, 1.0]"
