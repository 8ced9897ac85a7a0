"""Per-replica service metrics for the Ray Serve app, scraped from the ingress's ``GET /metrics``.

Each replica keeps the single server's own registry (``server.metrics``) and pushes its exposition
text to one small ``MetricsBoard`` deployment every few seconds (and after each adapter load); the
ingress answers ``/metrics`` with every live replica's series under a ``replica`` label. So
Prometheus scrapes one target, as with the single server, and sees adapter residency, loads and
batch composition per replica. Ray Serve's own series (``ray_serve_*``: replica counts, ongoing
requests, multiplexed model loads) come from Ray's metrics port (docs/ray.md).
"""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

REPLICA_LABEL = "replica"


class MetricsBoard:
    """Latest exposition text of each replica; entries older than ``stale_after_s`` (a replica that
    went away) are dropped."""

    def __init__(self, stale_after_s: float = 15.0) -> None:
        self.stale_after_s = stale_after_s
        self._latest: dict[str, tuple[float, str]] = {}

    def report(self, replica_id: str, exposition: str) -> None:
        self._latest[replica_id] = (time.time(), exposition)

    def snapshot(self) -> dict[str, tuple[float, str]]:
        """Live replicas: id -> (time of the last report, its exposition text)."""
        cutoff = time.time() - self.stale_after_s
        self._latest = {key: value for key, value in self._latest.items() if value[0] >= cutoff}
        return dict(self._latest)

    def exposition(self) -> str:
        return merge_expositions({key: text for key, (_, text) in self.snapshot().items()})


def merge_expositions(by_replica: dict[str, str]) -> str:
    """One exposition of several replicas' texts, each sample labelled with its replica id."""
    families: dict[str, tuple[str, str, list[str]]] = {}
    for replica_id, text in sorted(by_replica.items()):
        for family in text_string_to_metric_families(text):
            _, _, lines = families.setdefault(family.name, (family.type, family.documentation, []))
            for sample in family.samples:
                labels = {REPLICA_LABEL: replica_id, **sample.labels}
                rendered = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
                lines.append(f"{sample.name}{{{rendered}}} {floatToGoString(sample.value)}")
    out: list[str] = []
    for name, (kind, documentation, lines) in families.items():
        # the parser names a counter family without ``_total``; its samples (and generate_latest) keep it
        header = f"{name}_total" if kind == "counter" else name
        out.append(f"# HELP {header} {_escape_help(documentation)}")
        out.append(f"# TYPE {header} {kind}")
        out.extend(lines)
    return "\n".join(out) + "\n"


def sample_value(exposition: str, sample_name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of one sample in an exposition text (tests and the benchmark read replicas' counters)."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
    return None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")
