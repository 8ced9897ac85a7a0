"""The adapter store on disk: ``<adapters_dir>/<id>/adapter_config.json + adapter_model.safetensors``.

Files, ids and versions; the memory cache in front of the model is ``server.adapters``. The file
format (names, version hash, safetensors header) is elp's (``elp.adapter_files``), read here
without building the set. Users name ids, never paths; ids match a strict pattern and are resolved
inside the store only, and symlinks are never followed. Reads take both files in one consistent
pass (``snapshot``); writers publish with ``elp.adapter_files.write_adapter_files``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elp.adapter_files import (
    ADAPTER_FILES,
    CONFIG_NAME,
    WEIGHTS_NAME,
    content_sha256,
    embedding_sha256,
    files_sha256,
    safetensors_totals,
)
from server.errors import AdapterNotFoundError, InternalError
from server.schemas import AdapterEntry

ADAPTER_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_READ_RETRIES = 5

FileSignature = tuple[tuple[int, int, int], ...]


def validate_adapter_id(adapter_id: str) -> str:
    if not ADAPTER_ID_PATTERN.fullmatch(adapter_id or ""):
        raise AdapterNotFoundError(
            "adapter ids are 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter "
            "or digit"
        )
    return adapter_id


@dataclass(frozen=True)
class AdapterSnapshot:
    """Both files of one adapter set as read in one consistent pass. ``sha256`` is the version
    (content only: ``elp.adapter_files.content_sha256``); ``embedding_sha256`` the version of what it
    computes (threshold left out), the key of new enrolments; ``files_sha256`` the pre-provenance
    rule, kept so speakers enrolled under it are still found."""

    adapter_id: str
    files: dict[str, bytes]
    sha256: str
    signature: FileSignature
    files_sha256: str = ""
    embedding_sha256: str = ""

    @property
    def version(self) -> str:
        return self.sha256[:12]


class AdapterStore:
    """Read-only view of the adapter folder tree."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._info_cache: dict[str, tuple[FileSignature, AdapterEntry]] = {}

    def folder(self, adapter_id: str) -> Path:
        """The set's folder; symlinks are never followed, so nothing outside the store is reachable.

        A valid id has no path separator and is never ``.`` or ``..``, so ``root / id`` is an entry of
        the (resolved) root itself; refusing a symlink there is the whole check. No ``resolve()``: it
        walks every component of the path, and this runs for every request (a cache hit checks the
        files' signature)."""
        validate_adapter_id(adapter_id)
        candidate = self.root / adapter_id
        if candidate.is_symlink():
            raise AdapterNotFoundError(f"adapter '{adapter_id}' not found")
        return candidate

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name for entry in self.root.iterdir()
            if ADAPTER_ID_PATTERN.fullmatch(entry.name) and not entry.is_symlink() and entry.is_dir()
            and _is_regular_file(entry / CONFIG_NAME)
        )

    def exists(self, adapter_id: str) -> bool:
        try:
            return (self.folder(adapter_id) / CONFIG_NAME).is_file()
        except AdapterNotFoundError:
            return False

    def signature(self, adapter_id: str) -> FileSignature:
        """Cheap change detector (mtime, size, inode of both files); raises if the set is gone."""
        folder = self.folder(adapter_id)
        try:
            stats = [os.lstat(folder / name) for name in ADAPTER_FILES]
        except FileNotFoundError:
            raise AdapterNotFoundError(f"adapter '{adapter_id}' not found") from None
        if not all(stat.S_ISREG(s.st_mode) for s in stats):  # a symlinked file may point anywhere
            raise AdapterNotFoundError(f"adapter '{adapter_id}' not found")
        return tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in stats)

    def snapshot(self, adapter_id: str) -> AdapterSnapshot:
        """Read both files into memory, retrying while a writer is changing them underneath."""
        folder = self.folder(adapter_id)
        for _ in range(_READ_RETRIES):
            before = self.signature(adapter_id)
            try:
                files = {name: _read_no_follow(folder / name) for name in ADAPTER_FILES}
            except OSError:  # gone, or ELOOP: swapped for a symlink since the lstat
                raise AdapterNotFoundError(f"adapter '{adapter_id}' not found") from None
            if self.signature(adapter_id) == before:
                config, weights = files[CONFIG_NAME], files[WEIGHTS_NAME]
                return AdapterSnapshot(adapter_id, files, content_sha256(config, weights), before, files_sha256(files),
                                       embedding_sha256(config, weights))
            time.sleep(0.05)
        raise InternalError(f"adapter '{adapter_id}' kept changing on disk while being read; try again")

    def info(self, adapter_id: str) -> AdapterEntry:
        """The set's listing row from its config and safetensors header (``resident`` and
        ``default`` are the service's to fill in); cached per file signature."""
        signature = self.signature(adapter_id)
        cached = self._info_cache.get(adapter_id)
        if cached and cached[0] == signature:
            return cached[1]
        snapshot = self.snapshot(adapter_id)
        info = describe_snapshot(snapshot)
        self._info_cache[adapter_id] = (snapshot.signature, info)
        return info

    def read_config(self, adapter_id: str) -> dict[str, Any]:
        try:
            return json.loads(_read_no_follow(self.folder(adapter_id) / CONFIG_NAME))
        except OSError:
            raise AdapterNotFoundError(f"adapter '{adapter_id}' not found") from None
        except (ValueError, UnicodeDecodeError):
            return {}


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _read_no_follow(path: Path) -> bytes:
    """Read a file, refusing a symlink (O_NOFOLLOW) even if one appears after the checks."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def is_marked_default(config: dict[str, Any]) -> bool:
    if config.get("default") is True:
        return True
    sections = (config.get(name) for name in ("metadata", "training"))
    return any(isinstance(section, dict) and section.get("default") is True for section in sections)


def describe_snapshot(snapshot: AdapterSnapshot) -> AdapterEntry:
    """The listing row of a snapshot, computed without building the set."""
    try:
        config = json.loads(snapshot.files[CONFIG_NAME])
        if not isinstance(config, dict):
            raise ValueError("config is not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        return AdapterEntry(id=snapshot.adapter_id, task=None, backbone=None, num_params=None, size_bytes=None,
                            sha256=snapshot.sha256, resident=False, default=False,
                            error=f"unreadable {CONFIG_NAME}: {exc}")
    error = None
    try:
        num_params, size_bytes = safetensors_totals(snapshot.files[WEIGHTS_NAME])
    except ValueError as exc:
        num_params = size_bytes = None
        error = f"unreadable {WEIGHTS_NAME}: {exc}"
    return AdapterEntry(
        id=snapshot.adapter_id,
        task=config.get("task") if isinstance(config.get("task"), str) else None,
        backbone=config.get("backbone") if isinstance(config.get("backbone"), dict) else None,
        num_params=num_params, size_bytes=size_bytes, sha256=snapshot.sha256,
        resident=False, default=False, error=error,
    )


def resolve_default_ids(store: AdapterStore, configured: dict[str, str],
                        set_tasks: Mapping[str, str] | None = None,
                        fallbacks: Mapping[str, Sequence[str]] | None = None) -> dict[str, str | None]:
    """Per task of ``configured`` (task -> configured id): that id if the store has it for the task, else the
    first of the task's ``fallbacks`` it has (the registry's default, then its fallback sets), else a set marked
    ``"default": true``, else the task's only set, else None. ``set_tasks`` names the task whose sets answer a
    task, when not its own (diarization: verification's)."""
    set_of = {task: (set_tasks or {}).get(task, task) for task in configured}
    by_task: dict[str, list[str]] = {task: [] for task in set_of.values()}
    marked: dict[str, list[str]] = {task: [] for task in set_of.values()}
    for adapter_id in store.ids():
        try:
            config = store.read_config(adapter_id)
        except AdapterNotFoundError:  # removed since the listing
            continue
        task = config.get("task")
        if task in by_task:
            by_task[task].append(adapter_id)
            if is_marked_default(config):
                marked[task].append(adapter_id)
    defaults: dict[str, str | None] = {}
    for task, adapter_id in configured.items():
        sets, marks = by_task[set_of[task]], marked[set_of[task]]
        preferred = [adapter_id, *(fallbacks or {}).get(task, ())]
        present = [candidate for candidate in preferred if candidate in sets]
        if present:
            defaults[task] = present[0]
        elif marks:
            defaults[task] = marks[0]
        else:
            defaults[task] = sets[0] if len(sets) == 1 else None
    return defaults
