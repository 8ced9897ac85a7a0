"""String tables stored as bytes (one entry per line) in a set's safetensors file: the LM's words,
the text branch's feature names and lexicon terms (torch-free)."""

from __future__ import annotations

from collections.abc import Iterable


def join_strings(strings: Iterable[str]) -> bytes:
    """A string table as bytes (one per line), what a set stores in a uint8 tensor."""
    table = list(strings)
    if any("\n" in s for s in table):
        raise ValueError("a stored string may not hold a line break")
    return "\n".join(table).encode()


def split_strings(blob: bytes, count: int) -> list[str]:
    """:func:`join_strings` undone; ``count`` guards against a table of the wrong length."""
    table = blob.decode().split("\n") if count else []
    if len(table) != count:
        raise ValueError(f"string table holds {len(table)} entries, expected {count}")
    return table
