"""The adapter set's file format, in one place: file names, the version hash, the safetensors header.

A set is one folder: ``adapter_config.json`` + ``adapter_model.safetensors`` (its content) and an
optional ``README.md`` model card (its story). The *version* of a set (``id@version`` in answers,
the key of speaker enrolments) is a hash of its content only: the weights and every config field
that can change an answer (backbone identity, adapter and head configs, labels, vocabulary,
threshold, language model). The descriptive fields of the config (``PROVENANCE_FIELDS``: the
description, the measured metrics, the training record) and the model card are not hashed, so
editing them never makes a new version nor orphans enrolled speakers. Enrolments are keyed by the
*embedding* version, which also leaves out the decision fields (``DECISION_FIELDS``: the threshold),
so a recalibration keeps them too (docs/adapters.md).

The module itself needs no torch: the server's store and listing read sets through it without
building them.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
CARD_NAME = "README.md"
#: the files whose bytes make up a set (the card is not one of them)
ADAPTER_FILES = (CONFIG_NAME, WEIGHTS_NAME)
#: config fields that describe a set but never change what it answers: outside the version hash
PROVENANCE_FIELDS = ("description", "metrics", "training")
#: content fields that change the decision taken from a set's output but not the output itself (a
#: recalibrated verification threshold, or its duration table): outside the *embedding* version that keys enrolments
DECISION_FIELDS = ("threshold", "duration_thresholds")
LANGUAGE_MODEL_PREFIX = "language_model."

_SAFETENSORS_BYTES_PER_DTYPE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}


def content_sha256(config_bytes: bytes, weights_bytes: bytes) -> str:
    """The set's version hash: the weights' bytes and the content fields of the config (canonical
    JSON, so key order and indentation do not matter either). A config that is not a JSON object
    (a corrupt set, listed with its error) is hashed as raw bytes."""
    return _config_and_weights_sha256(config_bytes, weights_bytes, PROVENANCE_FIELDS)


def embedding_sha256(config_bytes: bytes, weights_bytes: bytes) -> str:
    """The version of what a set *computes*: ``content_sha256`` without the decision fields. Enrolled
    speakers are keyed by it, so recalibrating a threshold keeps every enrolment (the stored
    embeddings still compare) while retrained weights or a changed head orphan them, as they must."""
    return _config_and_weights_sha256(config_bytes, weights_bytes, PROVENANCE_FIELDS + DECISION_FIELDS)


def _config_and_weights_sha256(config_bytes: bytes, weights_bytes: bytes, left_out: tuple[str, ...]) -> str:
    try:
        config = json.loads(config_bytes)
    except (ValueError, UnicodeDecodeError):
        config = None
    if isinstance(config, dict):
        kept = {key: value for key, value in config.items() if key not in left_out}
        config_part = json.dumps(kept, sort_keys=True, separators=(",", ":")).encode()
    else:
        config_part = config_bytes
    return _hash_named({CONFIG_NAME: config_part, WEIGHTS_NAME: weights_bytes})


def files_sha256(files: Mapping[str, bytes]) -> str:
    """The version rule before provenance left the hash (both files' bytes as they are). Speakers
    enrolled under it stay valid while the set's bytes are unchanged (see ``server.speakers``)."""
    return _hash_named(files)


def _hash_named(parts: Mapping[str, bytes]) -> str:
    """sha256 over the parts in name order, each prefixed by its name and length."""
    digest = hashlib.sha256()
    for name in sorted(parts):
        digest.update(name.encode() + b"\0" + struct.pack("<Q", len(parts[name])))
        digest.update(parts[name])
    return digest.hexdigest()


#: safetensors' own bound on the header (``MAX_HEADER_SIZE`` in the Rust crate)
MAX_HEADER_BYTES = 100_000_000


def read_safetensors_header(data: bytes | memoryview) -> tuple[dict, int]:
    """(the header's JSON object, where the data area starts), with safetensors' checks on the header itself: at
    most ``MAX_HEADER_BYTES``, inside the file, a JSON object without a name given twice. Raises ValueError."""
    if len(data) < 8:
        raise ValueError("file too short for a safetensors header")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES:
        raise ValueError(f"header of {header_len} bytes is over the {MAX_HEADER_BYTES} byte limit")
    if 8 + header_len > len(data):
        raise ValueError("header length past the end of the file")
    try:
        header = json.loads(bytes(data[8 : 8 + header_len]), object_pairs_hook=_refuse_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header, 8 + header_len


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """A name given twice would leave one of its byte ranges unchecked: refuse, as safetensors does."""
    mapping = dict(pairs)
    if len(mapping) != len(pairs):
        raise ValueError("a key appears twice in the header")
    return mapping


def safetensors_totals(data: bytes) -> tuple[int, int]:
    """(parameter count, tensor bytes) from the safetensors header alone; an ASR set's language
    model tensors (``language_model.*``, also an intent text branch's copy ``text_branch.language_model.*``:
    word table, n-gram scores) take bytes but are no parameters. Raises ValueError for a file that is
    not safetensors."""
    header, _ = read_safetensors_header(data)
    try:
        params = size = 0
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            count = math.prod(entry["shape"])
            if not name.startswith(LANGUAGE_MODEL_PREFIX) and f".{LANGUAGE_MODEL_PREFIX}" not in name:
                params += count
            size += count * _SAFETENSORS_BYTES_PER_DTYPE.get(entry["dtype"], 4)
    except (UnicodeDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"malformed header: {exc}") from exc
    return params, size


def write_adapter_files(folder: str | Path, config_bytes: bytes, weights_bytes: bytes) -> Path:
    """Publish a set's files: each is written to a temporary and renamed, weights first, so a
    reader sees old or new files and never a partial one; a reader that catches the moment between
    the two renames sees a config whose ``weights_sha256`` disagrees and keeps the old version."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in ((WEIGHTS_NAME, weights_bytes), (CONFIG_NAME, config_bytes)):
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(payload)
        tmp.replace(folder / name)
    return folder
