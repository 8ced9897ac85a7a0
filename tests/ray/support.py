"""A real local Ray instance serving ``server.ray_app`` for tests and the benchmark: tiny backbone,
fractional CPUs per replica, extra adapter sets beyond one replica's budget, PostgreSQL speakers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.server.helpers import EMOTION_LABELS, REPO_ROOT, free_port

APP_NAME = "elp"


def add_emotion_sets(backbone_dir: Path, store: Path, count: int, *, first_seed: int = 100) -> list[str]:
    """``count`` more emotion sets (``emotion-x00``...) in ``store``: more sets than one replica keeps."""
    from elp import load_backbone
    from elp.testing import make_random_adapter_set

    backbone = load_backbone(str(backbone_dir))
    ids = []
    for index in range(count):
        adapter_id = f"emotion-x{index:02d}"
        make_random_adapter_set(backbone, task="emotion", labels=EMOTION_LABELS, seed=first_seed + index).save(
            store / adapter_id)
        ids.append(adapter_id)
    return ids


@dataclass
class RayDeployment:
    url: str
    args: dict[str, Any]

    def replica_handle(self) -> Any:
        from ray import serve

        return serve.get_deployment_handle("ElpReplica", app_name=APP_NAME)

    def board_handle(self) -> Any:
        from ray import serve

        return serve.get_deployment_handle("ElpMetricsBoard", app_name=APP_NAME)

    def replica_actor_names(self) -> list[str]:
        import ray

        return sorted(actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
                      if actor["name"].startswith(f"SERVE_REPLICA::{APP_NAME}#ElpReplica#"))

    def running_replicas(self) -> int:
        from ray import serve

        deployment = serve.status().applications[APP_NAME].deployments["ElpReplica"]
        return deployment.replica_states.get("RUNNING", 0)


@contextlib.contextmanager
def ray_serve(args: dict[str, Any], *, num_cpus: int = 2) -> Iterator[RayDeployment]:
    """Start Ray (local, ``num_cpus``), Serve on a free loopback port, and the app built from ``args``."""
    import ray
    from ray import serve

    from server.ray_app import build_app

    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}})
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name=APP_NAME, route_prefix="/")
        yield RayDeployment(f"http://127.0.0.1:{port}", args)
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()


def wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    """Poll ``predicate`` until truthy (for state owned by other processes: Ray's controller)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
