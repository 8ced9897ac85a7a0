"""Adapter sets: the folder store on disk and the memory cache in front of the model.

Store: ``<adapters_dir>/<id>/adapter_config.json + adapter_model.safetensors``. Users name ids, never
paths; ids match a strict pattern and are resolved inside the store only.

Cache: load on first use; a memory LRU bounded in tensor bytes; the default sets are pinned; sets in
use by queued requests (leases) are never evicted. One asyncio lock per adapter id, so twenty
concurrent first requests cause one load while different ids load in parallel (the check is
repeated after the lock is taken). Each resident entry is one *version*: the bytes are read into
memory once, hashed, and the set is parsed from exactly those bytes, so a set edited on disk is
served under its new hash after reload and never half old / half new.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import re
import stat
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.errors import AdapterNotFoundError, InternalError
from server.metrics import ServerMetrics

logger = logging.getLogger("server.adapters")

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_FILES = (CONFIG_FILE, WEIGHTS_FILE)
ADAPTER_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SAFETENSORS_BYTES_PER_DTYPE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}
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
    """Both files of one adapter set as read in one consistent pass."""

    adapter_id: str
    files: dict[str, bytes]
    sha256: str
    signature: FileSignature

    @property
    def version(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True)
class AdapterInfo:
    """What ``GET /adapters`` shows, computed without loading the weights."""

    id: str
    task: str | None
    backbone: dict[str, Any] | None
    num_params: int | None
    size_bytes: int | None
    sha256: str | None
    marked_default: bool
    error: str | None = None


class AdapterStore:
    """Read-only view of the adapter folder tree."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._info_cache: dict[str, tuple[FileSignature, AdapterInfo]] = {}

    def folder(self, adapter_id: str) -> Path:
        """The set's folder; symlinks are never followed, so nothing outside the store is reachable."""
        validate_adapter_id(adapter_id)
        candidate = self.root / adapter_id
        folder = candidate.resolve()
        if candidate.is_symlink() or folder.parent != self.root:
            raise AdapterNotFoundError(f"adapter '{adapter_id}' not found")
        return folder

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name for entry in self.root.iterdir()
            if ADAPTER_ID_PATTERN.fullmatch(entry.name) and not entry.is_symlink() and entry.is_dir()
            and _is_regular_file(entry / CONFIG_FILE)
        )

    def exists(self, adapter_id: str) -> bool:
        try:
            return (self.folder(adapter_id) / CONFIG_FILE).is_file()
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
                return AdapterSnapshot(adapter_id, files, _hash_files(files), before)
            time.sleep(0.05)
        raise InternalError(f"adapter '{adapter_id}' kept changing on disk while being read; try again")

    def info(self, adapter_id: str) -> AdapterInfo:
        """Listing data from the config and the safetensors header; cached per file signature."""
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
            return json.loads(_read_no_follow(self.folder(adapter_id) / CONFIG_FILE))
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


def _hash_files(files: dict[str, bytes]) -> str:
    """sha256 over the files in a fixed order, each prefixed by its name and length."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + struct.pack("<Q", len(files[name])))
        digest.update(files[name])
    return digest.hexdigest()


def is_marked_default(config: dict[str, Any]) -> bool:
    if config.get("default") is True:
        return True
    sections = (config.get(name) for name in ("metadata", "training"))
    return any(isinstance(section, dict) and section.get("default") is True for section in sections)


def describe_snapshot(snapshot: AdapterSnapshot) -> AdapterInfo:
    try:
        config = json.loads(snapshot.files[CONFIG_FILE])
        if not isinstance(config, dict):
            raise ValueError("config is not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        return AdapterInfo(snapshot.adapter_id, None, None, None, None, snapshot.sha256, False,
                           error=f"unreadable {CONFIG_FILE}: {exc}")
    task = config.get("task") if isinstance(config.get("task"), str) else None
    backbone = config.get("backbone") if isinstance(config.get("backbone"), dict) else None
    error = None
    try:
        num_params, size_bytes = _safetensors_totals(snapshot.files[WEIGHTS_FILE])
    except ValueError as exc:
        num_params = size_bytes = None
        error = f"unreadable {WEIGHTS_FILE}: {exc}"
    return AdapterInfo(snapshot.adapter_id, task, backbone, num_params, size_bytes, snapshot.sha256,
                       is_marked_default(config), error)


def _safetensors_totals(data: bytes) -> tuple[int, int]:
    """(parameter count, tensor bytes) from the safetensors header alone; an ASR set's language
    model tensors (``language_model.*``: word table, n-gram scores) take bytes but are no parameters."""
    if len(data) < 8:
        raise ValueError("file too short")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise ValueError("header length past end of file")
    header = json.loads(data[8 : 8 + header_len])
    params = size = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = math.prod(entry["shape"])
        if not name.startswith("language_model."):
            params += count
        size += count * _SAFETENSORS_BYTES_PER_DTYPE.get(entry["dtype"], 4)
    return params, size


# ------------------------------------------------------------------------------------------------
# cache


@dataclass
class ResidentAdapter:
    """One loaded version of one adapter set, registered in the model under ``model_key``."""

    adapter_id: str
    sha256: str
    signature: FileSignature
    task: str
    config: Any  # elp AdapterConfig
    size_bytes: int
    num_params: int
    model_key: str
    leases: int = 0
    stale: bool = False
    last_used: float = field(default_factory=time.monotonic)

    @property
    def version(self) -> str:
        return self.sha256[:12]

    @property
    def label(self) -> str:
        """``id@version`` as shown in task answers."""
        return f"{self.adapter_id}@{self.version}"


class AdapterLease:
    """Keeps a resident adapter from being evicted while a request uses it."""

    def __init__(self, cache: AdapterCache, entry: ResidentAdapter) -> None:
        self._cache, self.entry, self._released = cache, entry, False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._cache._release(self.entry)

    def __enter__(self) -> ResidentAdapter:
        return self.entry

    def __exit__(self, *exc: object) -> None:
        self.release()


ModelCall = Callable[[Callable[[Any], Any]], "asyncio.Future[Any] | Any"]


class AdapterCache:
    """Byte-bounded LRU of resident adapter set versions. All state lives on the event loop thread."""

    def __init__(
        self,
        store: AdapterStore,
        *,
        parse_adapter_set: Callable[[bytes, bytes], Any],
        run_on_model: Callable[[Callable[[Any], Any]], Any],
        budget_bytes: int,
        executor: Executor,
        metrics: ServerMetrics,
    ) -> None:
        """``parse_adapter_set(config_bytes, weights_bytes)`` builds a set (elp ``AdapterSet.from_bytes``);
        ``run_on_model(fn)`` runs ``fn(model)`` on the model worker and returns a concurrent future."""
        self.store = store
        self._parse_adapter_set = parse_adapter_set
        self._run_on_model = run_on_model
        self.budget_bytes = budget_bytes
        self._executor = executor
        self._metrics = metrics
        self._current: OrderedDict[str, ResidentAdapter] = OrderedDict()  # id -> newest version, LRU order
        self._stale: list[ResidentAdapter] = []  # older versions still leased
        self._locks: dict[str, asyncio.Lock] = {}
        self.pinned: set[str] = set()
        self.loads = 0
        self._load_serial = 0

    # -- queries -----------------------------------------------------------------------------------
    def resident(self, adapter_id: str) -> ResidentAdapter | None:
        return self._current.get(adapter_id)

    def resident_ids(self) -> list[str]:
        return list(self._current)

    @property
    def resident_bytes(self) -> int:
        return sum(e.size_bytes for e in self._current.values()) + sum(e.size_bytes for e in self._stale)

    # -- acquire -----------------------------------------------------------------------------------
    async def acquire(self, adapter_id: str, task: str | None = None) -> AdapterLease:
        """Lease the current version of ``adapter_id`` (loading it if needed) for one request."""
        validate_adapter_id(adapter_id)
        entry = self._fresh_entry(adapter_id)
        if entry is None:
            lock = self._locks.setdefault(adapter_id, asyncio.Lock())
            async with lock:
                entry = self._fresh_entry(adapter_id)  # another request may have loaded it meanwhile
                if entry is None:
                    self._metrics.adapter_cache_misses.inc()
                    entry = await self._load(adapter_id)
                else:
                    self._metrics.adapter_cache_hits.inc()
        else:
            self._metrics.adapter_cache_hits.inc()
        if task is not None and entry.task != task:
            raise AdapterNotFoundError(f"adapter '{adapter_id}' is for task '{entry.task}', not '{task}'")
        entry.leases += 1  # before any eviction, so the set cannot go while this request needs it
        entry.last_used = time.monotonic()
        if adapter_id in self._current:
            self._current.move_to_end(adapter_id)
        self._evict_to_budget()
        self._update_gauges()
        return AdapterLease(self, entry)

    def _fresh_entry(self, adapter_id: str) -> ResidentAdapter | None:
        """The resident entry if its files are unchanged on disk; marks it stale otherwise."""
        entry = self._current.get(adapter_id)
        if entry is None:
            if not self.store.exists(adapter_id):
                raise AdapterNotFoundError(f"adapter '{adapter_id}' not found")
            return None
        try:
            signature = self.store.signature(adapter_id)
        except AdapterNotFoundError:
            self._retire(entry, reason="removed from disk")
            raise
        if signature == entry.signature:
            return entry
        return None  # changed on disk: reload; the old version retires once the new one is in

    async def _load(self, adapter_id: str) -> ResidentAdapter:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            snapshot, aset = await loop.run_in_executor(self._executor, self._read_and_parse, adapter_id)
            old = self._current.get(adapter_id)
            if old is not None and old.sha256 == snapshot.sha256:
                old.signature = snapshot.signature  # touched, same bytes: keep serving the same version
                return old
            # A load counter in the key: after unload + reload of the same bytes, the retiring entry
            # (still leased by a queued request) and the new one must not share a model key.
            self._load_serial += 1
            model_key = f"{adapter_id}@{snapshot.sha256[:16]}#{self._load_serial}"
            await asyncio.wrap_future(self._run_on_model(lambda model: model.add_adapter_set(model_key, aset)))
        except AdapterNotFoundError:
            raise
        except Exception as exc:
            self._metrics.adapter_load_failures.inc()
            raise _load_error(adapter_id, exc) from exc
        entry = ResidentAdapter(
            adapter_id=adapter_id,
            sha256=snapshot.sha256,
            signature=snapshot.signature,
            task=aset.config.task,
            config=aset.config,
            size_bytes=int(aset.size_bytes),
            num_params=int(aset.num_parameters()),
            model_key=model_key,
        )
        old = self._current.pop(adapter_id, None)
        self._current[adapter_id] = entry
        if old is not None:
            self._retire(old, reason="changed on disk", already_popped=True)
        self.loads += 1
        self._metrics.adapter_loads.inc()
        self._metrics.adapter_load_seconds.observe(time.perf_counter() - started)
        logger.info("loaded adapter %s (%s, %d bytes)", entry.label, entry.task, entry.size_bytes)
        self._update_gauges()
        return entry

    def _read_and_parse(self, adapter_id: str) -> tuple[AdapterSnapshot, Any]:
        """Worker-pool side of a load: snapshot the bytes, then parse exactly those bytes."""
        snapshot = self.store.snapshot(adapter_id)
        return snapshot, self._parse_adapter_set(snapshot.files[CONFIG_FILE], snapshot.files[WEIGHTS_FILE])

    # -- release / evict ---------------------------------------------------------------------------
    def _release(self, entry: ResidentAdapter) -> None:
        entry.leases -= 1
        if entry.leases <= 0 and entry.stale:
            self._unregister(entry)
        elif entry.leases <= 0:
            self._evict_to_budget()

    def _retire(self, entry: ResidentAdapter, *, reason: str, already_popped: bool = False) -> None:
        if not already_popped:
            self._current.pop(entry.adapter_id, None)
        entry.stale = True
        logger.info("retiring adapter %s (%s)", entry.label, reason)
        if entry.leases <= 0:
            self._unregister(entry)
        else:
            self._stale.append(entry)
        self._update_gauges()

    def _unregister(self, entry: ResidentAdapter) -> None:
        if entry in self._stale:
            self._stale.remove(entry)
        self._run_on_model(lambda model: model.remove_adapter_set(entry.model_key))
        self._metrics.adapter_evictions.inc()
        self._update_gauges()

    def _evict_to_budget(self) -> None:
        """Drop least recently used, unpinned, unleased sets until the resident bytes fit the budget."""
        for adapter_id in list(self._current):
            if self.resident_bytes <= self.budget_bytes:
                break
            entry = self._current[adapter_id]
            if adapter_id in self.pinned or entry.leases > 0:
                continue
            self._retire(entry, reason="LRU eviction")

    async def unload(self, adapter_id: str) -> bool:
        """Admin: drop a set from memory (it reloads on next use). False if it was not resident."""
        validate_adapter_id(adapter_id)
        lock = self._locks.setdefault(adapter_id, asyncio.Lock())
        async with lock:
            entry = self._current.get(adapter_id)
            if entry is None:
                if not self.store.exists(adapter_id):
                    raise AdapterNotFoundError(f"adapter '{adapter_id}' not found")
                return False
            self._retire(entry, reason="admin unload")
            return True

    def _update_gauges(self) -> None:
        self._metrics.resident_adapters.set(len(self._current) + len(self._stale))
        self._metrics.resident_adapter_bytes.set(self.resident_bytes)


def _load_error(adapter_id: str, exc: Exception) -> InternalError:
    """A clear, safe message for a set that exists but cannot be served."""
    from elp.errors import AdapterFormatError, BackboneMismatchError

    if isinstance(exc, BackboneMismatchError):
        return InternalError(f"adapter '{adapter_id}' was trained for another backbone and cannot be served here")
    if isinstance(exc, AdapterFormatError):
        return InternalError(f"adapter '{adapter_id}' is corrupt or incomplete on disk and cannot be loaded")
    if isinstance(exc, InternalError):
        return exc
    return InternalError(f"adapter '{adapter_id}' could not be loaded")
