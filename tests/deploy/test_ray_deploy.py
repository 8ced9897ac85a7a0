"""Ray Serve deployment files: the serve config builds the app it names with real settings, the
KubeRay manifest carries the same serve config, GPU requests and the volumes its env points at, and
the compose profile's env are real settings."""

from __future__ import annotations

import importlib

import pytest
import yaml

from tests.server.helpers import REPO_ROOT

pytest.importorskip("ray.serve")

from server.ray_app import RaySettings  # noqa: E402

SERVE_CONFIG = REPO_ROOT / "deploy" / "ray" / "serve_config.yaml"
RAYSERVICE = REPO_ROOT / "deploy" / "ray" / "rayservice.yaml"
KNOWN_ENV = {f"ELP_{name.upper()}" for name in RaySettings.model_fields}


def _application(config: dict) -> dict:
    (application,) = config["applications"]
    return application


def test_serve_config_names_the_builder_and_real_settings() -> None:
    application = _application(yaml.safe_load(SERVE_CONFIG.read_text()))
    module, attribute = application["import_path"].split(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    assert set(application["args"]) <= set(RaySettings.model_fields)
    settings = RaySettings(**application["args"])
    assert settings.ray_max_replicas > settings.ray_min_replicas  # autoscaling on


def test_rayservice_carries_the_serve_config_gpus_and_volumes() -> None:
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all(RAYSERVICE.read_text())}
    assert {"RayService", "StatefulSet", "Service", "Secret"} <= set(documents)
    spec = documents["RayService"]["spec"]
    assert yaml.safe_load(spec["serveConfigV2"]) == yaml.safe_load(SERVE_CONFIG.read_text())
    (workers,) = spec["rayClusterConfig"]["workerGroupSpecs"]
    (container,) = workers["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
    env = {item["name"]: item for item in container["env"]}
    assert set(env) <= KNOWN_ENV, set(env) - KNOWN_ENV
    assert env["ELP_RAY_REPLICA_GPUS"]["value"] == "1" and "secretKeyRef" in env["ELP_SPEAKERS_URL"]["valueFrom"]
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert env["ELP_BACKBONE"]["value"].startswith(tuple(mounts)) and env["ELP_ADAPTERS_DIR"]["value"] in mounts
    claims = {v["persistentVolumeClaim"]["claimName"] for v in workers["template"]["spec"]["volumes"]}
    assert claims == {"elp-models", "elp-adapters"}


def test_compose_ray_profile_uses_real_settings() -> None:
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    ray_service = services["elp-ray"]
    assert ray_service["profiles"] == ["ray"] and services["postgres"]["profiles"] == ["ray"]
    assert ray_service["build"]["args"]["ELP_EXTRAS"] == "ray"
    assert set(ray_service["environment"]) <= KNOWN_ENV, set(ray_service["environment"]) - KNOWN_ENV
    assert "deploy/ray/serve_config.yaml" in " ".join(ray_service["command"])
    assert ray_service["environment"]["ELP_SPEAKERS_URL"].startswith("postgresql://")
