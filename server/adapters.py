"""Adapter sets: the memory cache in front of the model (the store on disk is ``server.adapter_store``).

Cache: load on first use; a memory LRU bounded in tensor bytes; the default sets are pinned; sets in
use by queued requests (leases) are never evicted. One asyncio lock per adapter id while a load or
unload runs (dropped after, so unknown ids never grow the table), so twenty concurrent first
requests cause one load while different ids load in parallel (the check is repeated after the lock
is taken). Each resident entry is one *version*: the bytes are read into memory once, hashed, and
the set is parsed from exactly those bytes, so a set edited on disk is served under its new hash
after reload and never half old / half new. A reload that fails (a set half rewritten, corrupt, or
changing while read) keeps the resident version serving, so replacing a set on disk never gives 500s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from elp.adapter_files import CONFIG_NAME, WEIGHTS_NAME
from server.adapter_store import AdapterSnapshot, AdapterStore, FileSignature, validate_adapter_id
from server.errors import AdapterNotFoundError, InternalError
from server.memory import return_freed_memory
from server.metrics import ServerMetrics

__all__ = ["AdapterCache", "AdapterLease", "ResidentAdapter"]

logger = logging.getLogger("server.adapters")


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
    #: its tensors' memory by storage (``AdapterSet.tensor_storages``): a decoder two sets share is counted once
    storages: dict[int, int] = field(repr=False)
    num_params: int
    model_key: str
    leases: int = 0
    stale: bool = False
    failed_signature: FileSignature | None = None  # files on disk whose reload failed: keep serving this
    last_used: float = field(default_factory=time.monotonic)
    files_sha256: str = ""  # the version under the rule before provenance left the hash
    embedding_sha256: str = ""  # the version of what it computes (threshold left out): keys enrolments

    @property
    def version(self) -> str:
        return self.sha256[:12]

    @property
    def enrolment_version(self) -> str:
        """Where new enrolments go: the embedding version (a recalibrated threshold keeps enrolments)."""
        return self.embedding_sha256 or self.sha256

    @property
    def enrolment_versions(self) -> tuple[str, ...]:
        """Versions whose enrolled speakers this entry serves: ``enrolment_version``, then its own version
        and the same bytes' version under the old whole-files rule (enrolments made before each rule)."""
        return tuple(dict.fromkeys(v for v in (self.enrolment_version, self.sha256, self.files_sha256) if v))

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
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # id -> (lock, users now)
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
        """Bytes of the resident sets' tensors, each storage once (sets sharing a decoder hold it once)."""
        storages: dict[int, int] = {}
        for entry in (*self._current.values(), *self._stale):
            storages.update(entry.storages)
        return sum(storages.values())

    # -- acquire -----------------------------------------------------------------------------------
    async def acquire(self, adapter_id: str, task: str | None = None) -> AdapterLease:
        """Lease the current version of ``adapter_id`` (loading it if needed) for one request."""
        validate_adapter_id(adapter_id)
        entry = self._fresh_entry(adapter_id)
        if entry is None:
            async with self._id_lock(adapter_id):
                entry = self._fresh_entry(adapter_id)  # another request may have loaded it meanwhile
                if entry is None:
                    self._metrics.adapter_cache_misses.inc()
                    entry = await self._load_or_keep(adapter_id)
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

    @contextlib.asynccontextmanager
    async def _id_lock(self, adapter_id: str) -> AsyncIterator[None]:
        """The id's lock, held for one load or unload; the table holds only ids someone is using now."""
        lock, users = self._locks.get(adapter_id, (asyncio.Lock(), 0))
        self._locks[adapter_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[adapter_id]
            if users <= 1:
                del self._locks[adapter_id]
            else:
                self._locks[adapter_id] = (lock, users - 1)

    def _fresh_entry(self, adapter_id: str) -> ResidentAdapter | None:
        """The resident entry if its files are unchanged on disk (or unchanged since a reload of them
        failed); None when a (re)load is due. A set gone from disk retires: 404."""
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
        if signature in (entry.signature, entry.failed_signature):
            return entry
        return None  # changed on disk: reload; the old version retires once the new one is in

    async def _load_or_keep(self, adapter_id: str) -> ResidentAdapter:
        """Load the set's files; if that fails while an older version is resident, keep serving it (a
        set being replaced on disk is half written for a moment) until the files change again."""
        old = self._current.get(adapter_id)
        try:
            return await self._load(adapter_id)
        except (InternalError, AdapterNotFoundError) as exc:
            if old is None or self._current.get(adapter_id) is not old:
                raise
            try:
                old.failed_signature = self.store.signature(adapter_id)
            except AdapterNotFoundError:
                old.failed_signature = None
            logger.warning("adapter '%s' changed on disk but could not be loaded (%s); still serving %s",
                           adapter_id, getattr(exc, "message", exc), old.label)
            return old

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
            storages=aset.tensor_storages(),
            num_params=int(aset.num_parameters()),
            model_key=model_key,
            files_sha256=snapshot.files_sha256,
            embedding_sha256=snapshot.embedding_sha256,
        )
        del snapshot  # its bytes (as large as the set's tensors) are garbage now
        await loop.run_in_executor(self._executor, return_freed_memory)
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
        return snapshot, self._parse_adapter_set(snapshot.files[CONFIG_NAME], snapshot.files[WEIGHTS_NAME])

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
        removed = self._run_on_model(lambda model: model.remove_adapter_set(entry.model_key))
        removed.add_done_callback(lambda _: self._after_unload())
        self._metrics.adapter_evictions.inc()
        self._update_gauges()

    def _after_unload(self) -> None:
        """The removed set's tensors are free: hand them back to the OS, off the model thread."""
        with contextlib.suppress(RuntimeError):  # the pool is shut down: the process is ending
            self._executor.submit(return_freed_memory)

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
        if adapter_id not in self._current and not self.store.exists(adapter_id):
            raise AdapterNotFoundError(f"adapter '{adapter_id}' not found")  # before any lock: no table growth
        async with self._id_lock(adapter_id):
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
    from elp.errors import AdapterFormatError, BackboneMismatchError, RescorerUnavailableError

    if isinstance(exc, RescorerUnavailableError):
        return InternalError(f"adapter '{adapter_id}' has a second pass whose decoder and tokenizer this server's "
                             "backbone folder lacks: serve it with ELP_ASR_RESCORING=false")
    if isinstance(exc, BackboneMismatchError):
        return InternalError(f"adapter '{adapter_id}' was trained for another backbone and cannot be served here")
    if isinstance(exc, AdapterFormatError):
        return InternalError(f"adapter '{adapter_id}' is corrupt or incomplete on disk and cannot be loaded")
    if isinstance(exc, InternalError):
        return exc
    return InternalError(f"adapter '{adapter_id}' could not be loaded")
