"""Enrolled speakers: one mean embedding per speaker per verification adapter version.

Layout: ``<speakers_dir>/<adapter_id>/<adapter_sha256[:12]>/<speaker_id>.safetensors``. Each file holds
one tensor ``embedding`` (the L2-normalised mean of the enrolment clips' embeddings) and metadata
(speaker, adapter id, full adapter hash, clip count, total seconds, creation time). safetensors, never
pickle. An embedding is only comparable with embeddings of the same adapter version, so a changed
adapter set means re-enrolling.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from elp.tasks.verification import mean_unit_embedding
from server.errors import InvalidRequestError, SpeakerNotFoundError

if TYPE_CHECKING:
    from server.settings import Settings

#: a folder changed this recently is read again next time (coarse file-system clocks: git's "racy" rule)
RACY_MTIME_NS = 2_000_000_000
SPEAKER_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_speaker_id(speaker_id: str) -> str:
    if not SPEAKER_ID_PATTERN.fullmatch(speaker_id or ""):
        raise InvalidRequestError(
            "speaker ids are 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return speaker_id


@dataclass(frozen=True)
class EnrolledSpeaker:
    speaker: str
    adapter: str  # id@version
    adapter_sha256: str
    num_clips: int
    total_duration_s: float
    created_at: float
    embedding: torch.Tensor | None = None


class SpeakerBackend(Protocol):
    """What the routes need from an enrolment store: the files below (one process, the default) or
    PostgreSQL (``server.speakers_postgres``: every replica of a scaled-out deployment sees the same)."""

    def enroll(self, speaker_id: str, adapter_id: str, adapter_sha256: str, embeddings: list[torch.Tensor],
               total_duration_s: float) -> EnrolledSpeaker: ...

    def get(self, speaker_id: str, adapter_id: str, adapter_sha256: str) -> EnrolledSpeaker: ...

    def list(self) -> list[EnrolledSpeaker]: ...

    def gallery(self, adapter_id: str, adapter_sha256: str) -> list[EnrolledSpeaker]:
        """Every speaker enrolled for this adapter version, embeddings included, by speaker id."""
        ...

    def delete(self, speaker_id: str) -> int: ...


def open_speaker_store(settings: Settings) -> SpeakerBackend:
    """``ELP_SPEAKERS_URL`` (postgresql://...) when set, else the files under ``ELP_SPEAKERS_DIR``."""
    url = settings.speakers_url.get_secret_value() if settings.speakers_url is not None else None
    if url:
        from server.speakers_postgres import PostgresSpeakerStore

        return PostgresSpeakerStore(url)
    return SpeakerStore(settings.speakers_dir)


def not_enrolled(speaker_id: str, adapter_id: str, adapter_sha256: str, older_version: bool) -> SpeakerNotFoundError:
    hint = " under an older version of this adapter; enrol again" if older_version else ""
    return SpeakerNotFoundError(
        f"speaker '{speaker_id}' is not enrolled for adapter {adapter_id}@{adapter_sha256[:12]}{hint}"
    )


def get_enrolled(store: SpeakerBackend, speaker_id: str, adapter_id: str, versions: tuple[str, ...]) -> EnrolledSpeaker:
    """The speaker's enrolment under the first of ``versions`` that has one (a resident set's own
    version, then the same bytes' version under the pre-provenance hash rule: docs/adapters.md);
    the error names the first version."""
    first, *fallbacks = versions
    try:
        return store.get(speaker_id, adapter_id, first)
    except SpeakerNotFoundError:
        for version in fallbacks:
            try:
                return store.get(speaker_id, adapter_id, version)
            except SpeakerNotFoundError:
                continue
        raise


def get_gallery(store: SpeakerBackend, adapter_id: str, versions: tuple[str, ...]) -> list[EnrolledSpeaker]:
    """Every speaker enrolled for the set (``/identify``): under its own version, then those only enrolled
    under a fallback version (as :func:`get_enrolled` finds one speaker), by speaker id."""
    found: dict[str, EnrolledSpeaker] = {}
    for version in versions:
        for record in store.gallery(adapter_id, version):
            found.setdefault(record.speaker, record)
    return [found[speaker] for speaker in sorted(found)]


class SpeakerStore:
    """File-backed enrolment store; every write is atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        #: folder -> (its mtime when read, its enrolments): /identify reads a version's every enrolment per request
        #: (~45 ms for 1,000 files); every write here renames or unlinks in that folder, which moves its mtime
        self._galleries: dict[Path, tuple[int, list[EnrolledSpeaker]]] = {}

    def _folder(self, adapter_id: str, adapter_sha256: str) -> Path:
        """The enrolments of one adapter version (ids are validated before they get here; checked again)."""
        folder = (self.root / adapter_id / adapter_sha256[:12]).resolve()
        if not folder.is_relative_to(self.root) or folder == self.root:
            raise InvalidRequestError("invalid speaker or adapter id")
        return folder

    def _path(self, speaker_id: str, adapter_id: str, adapter_sha256: str) -> Path:
        validate_speaker_id(speaker_id)
        return self._folder(adapter_id, adapter_sha256) / f"{speaker_id}.safetensors"

    def enroll(
        self, speaker_id: str, adapter_id: str, adapter_sha256: str, embeddings: list[torch.Tensor],
        total_duration_s: float,
    ) -> EnrolledSpeaker:
        mean = mean_unit_embedding(embeddings)
        path = self._path(speaker_id, adapter_id, adapter_sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = EnrolledSpeaker(
            speaker_id, f"{adapter_id}@{adapter_sha256[:12]}", adapter_sha256, len(embeddings),
            round(total_duration_s, 3), time.time(), mean,
        )
        metadata = {
            "speaker": speaker_id,
            "adapter_id": adapter_id,
            "adapter_sha256": adapter_sha256,
            "num_clips": str(record.num_clips),
            "total_duration_s": str(record.total_duration_s),
            "created_at": str(record.created_at),
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file({"embedding": mean}, tmp, metadata=metadata)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return record

    def get(self, speaker_id: str, adapter_id: str, adapter_sha256: str) -> EnrolledSpeaker:
        path = self._path(speaker_id, adapter_id, adapter_sha256)
        if not path.is_file():
            other_versions = [p for p in self._files_of(speaker_id) if p.parent.parent.name == adapter_id]
            raise not_enrolled(speaker_id, adapter_id, adapter_sha256, bool(other_versions))
        return _read(path, with_embedding=True)

    def list(self) -> list[EnrolledSpeaker]:
        if not self.root.is_dir():
            return []
        return [_read(path) for path in sorted(self.root.glob("*/*/*.safetensors"))]

    def gallery(self, adapter_id: str, adapter_sha256: str) -> list[EnrolledSpeaker]:
        folder = self._folder(adapter_id, adapter_sha256)
        try:
            mtime = folder.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        cached = self._galleries.get(folder)
        if cached is not None and cached[0] == mtime:
            return list(cached[1])
        records = [_read(path, with_embedding=True) for path in sorted(folder.glob("*.safetensors"))]
        if time.time_ns() - mtime > RACY_MTIME_NS:  # a write in the same clock tick as this read would not move it
            self._galleries[folder] = (mtime, records)
        return list(records)

    def delete(self, speaker_id: str) -> int:
        """Remove every enrolment of ``speaker_id`` (all adapters, all versions)."""
        validate_speaker_id(speaker_id)
        files = self._files_of(speaker_id)
        if not files:
            raise SpeakerNotFoundError(f"speaker '{speaker_id}' is not enrolled")
        for path in files:
            path.unlink(missing_ok=True)
        return len(files)

    def _files_of(self, speaker_id: str) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(self.root.glob(f"*/*/{speaker_id}.safetensors"))


def _read(path: Path, with_embedding: bool = False) -> EnrolledSpeaker:
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        embedding = handle.get_tensor("embedding") if with_embedding else None
    sha = meta.get("adapter_sha256", path.parent.name)
    return EnrolledSpeaker(
        speaker=meta.get("speaker", path.stem),
        adapter=f"{meta.get('adapter_id', path.parent.parent.name)}@{sha[:12]}",
        adapter_sha256=sha,
        num_clips=int(meta.get("num_clips", 0)),
        total_duration_s=float(meta.get("total_duration_s", 0.0)),
        created_at=float(meta.get("created_at", 0.0)),
        embedding=embedding,
    )
