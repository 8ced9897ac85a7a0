"""The client mirrors the server's adapter listing row (it stays torch- and pydantic-free, so it
cannot import ``server.schemas``): the two must agree field by field, in order, with the same types."""

from __future__ import annotations

import dataclasses
import typing

from clients.models import AdapterInfo, parse_adapters
from server.schemas import AdapterEntry


def test_client_adapter_info_mirrors_the_server_listing_row() -> None:
    server_fields = {name: field.annotation for name, field in AdapterEntry.model_fields.items()}
    client_hints = typing.get_type_hints(AdapterInfo)
    client_fields = {field.name: client_hints[field.name] for field in dataclasses.fields(AdapterInfo)}
    assert list(client_fields) == list(server_fields)
    assert client_fields == server_fields


def test_a_served_row_parses_into_the_client_model_unchanged() -> None:
    row = AdapterEntry(id="a", task="emotion", backbone={"name": "b"}, num_params=3, size_bytes=12,
                       sha256="0" * 64, resident=True, default=False, error=None).model_dump()
    assert dataclasses.asdict(parse_adapters([row])[0]) == row
