"""Each task's default adapter set: which one answers a request that names none, which are loaded and pinned at
start, and what keeps them from being ready (``/readyz``).

Split from ``server.service`` so that the service wires stages together and this decides defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from elp.tasks import TASKS
from server.adapter_store import AdapterStore, resolve_default_ids
from server.errors import AdapterNotFoundError

if TYPE_CHECKING:
    from server.adapters import AdapterCache

logger = logging.getLogger("server.service")
#: task -> the task of the sets that answer it (diarization's are verification sets: ``TaskSpec.answers_with``)
SET_TASKS = MappingProxyType({spec.name: spec.set_task for spec in TASKS})
#: the tasks whose default set is loaded, pinned and waited for at start (TaskSpec.default_at_start)
STARTUP_TASKS = frozenset(spec.name for spec in TASKS if spec.default_at_start)
#: per task, the sets that answer when the configured default is not in the store (registry order)
DEFAULT_FALLBACKS = MappingProxyType({spec.name: (spec.default_adapter, *spec.fallback_adapters) for spec in TASKS})


class DefaultSets:
    """The defaults of one deployment: ``configured`` (task -> id, from the settings) resolved against ``store``."""

    def __init__(self, store: AdapterStore, configured: Mapping[str, str]) -> None:
        self.store = store
        self.configured = dict(configured)
        self._ids: dict[str, str | None] = {}
        self._problems: dict[str, str] = {}  # task -> why its start-up default failed to load

    def resolve(self) -> dict[str, str | None]:
        """Per task: the configured id if it exists, else the registry's default or fallback sets, else a set
        marked ``"default": true``, else the only set of that task, else none (requests then must name an
        adapter)."""
        self._ids = resolve_default_ids(self.store, self.configured, SET_TASKS, DEFAULT_FALLBACKS)
        return self._ids

    @property
    def ids(self) -> dict[str, str | None]:
        """task -> its default set as last resolved (None: none installed)."""
        return dict(self._ids)

    def at_start(self) -> dict[str, str]:
        """The resolved default sets loaded, pinned and waited for at start (``TaskSpec.default_at_start``)."""
        return {task: adapter_id for task, adapter_id in self._ids.items()
                if adapter_id is not None and task in STARTUP_TASKS}

    def adapter_for(self, task: str, recheck: bool = False) -> str:
        """The task's default set id, as last resolved; ``recheck`` resolves again from the store first
        (after the last resolved one turned out to be gone)."""
        adapter_id = None if recheck else self._ids.get(task)
        if adapter_id is None:
            adapter_id = self.resolve().get(task)
        if adapter_id is None:
            raise AdapterNotFoundError(f"no default {task} adapter is installed; name one with the 'adapter' field")
        return adapter_id

    async def load(self, cache: AdapterCache) -> None:
        """Pin and load every start-up default; a failure is kept for ``/readyz`` (requests get it on demand)."""
        for task, adapter_id in self.at_start().items():
            cache.pinned.add(adapter_id)
            try:
                lease = await cache.acquire(adapter_id, SET_TASKS[task])
                lease.release()
                self._problems.pop(task, None)
            except Exception as exc:  # reported by /readyz; requests get the error on demand
                message = getattr(exc, "message", None) or type(exc).__name__
                self._problems[task] = f"default {task} adapter '{adapter_id}': {message}"
                logger.error("%s", self._problems[task])

    def unready(self, cache: AdapterCache) -> list[str]:
        """Why start-up defaults are not resident: their load's error, or that they are not loaded yet."""
        return [self._problems.get(task, f"default {task} adapter '{adapter_id}' not resident yet")
                for task, adapter_id in self.at_start().items() if cache.resident(adapter_id) is None]
