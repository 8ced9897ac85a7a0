"""Deployment files: compose parses and references files that exist, env vars are real settings,
the dashboard only queries metrics the server exports, and the image's entry command starts it."""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from server.metrics import EXPORTED_METRIC_NAMES
from server.settings import Settings
from tests.server.helpers import REPO_ROOT, free_port, server_process

COMPOSE = REPO_ROOT / "docker-compose.yml"
DASHBOARDS = REPO_ROOT / "deploy" / "grafana" / "dashboards"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_parses_and_every_referenced_file_exists() -> None:
    services = compose()["services"]
    assert {"elp-server", "prometheus", "grafana"} <= set(services)
    build = services["elp-server"]["build"]
    assert (REPO_ROOT / build["context"] / build["dockerfile"]).is_file()
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./deploy"):  # config we ship (./models and ./adapters_store are user data)
                assert (REPO_ROOT / source).exists(), source
    assert (REPO_ROOT / ".dockerignore").is_file()
    datasource = yaml.safe_load((REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    scrape = yaml.safe_load((REPO_ROOT / "deploy/prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["elp-server:8000"]


def test_compose_environment_uses_real_settings() -> None:
    environment = compose()["services"]["elp-server"]["environment"]
    known = {f"ELP_{name.upper()}" for name in Settings.model_fields}
    assert set(environment) <= known, set(environment) - known
    values = {key[4:].lower(): value for key, value in environment.items() if "${" not in str(value)}
    Settings(**values)  # every value validates


def test_compose_requires_the_api_key() -> None:
    """The compose server binds 0.0.0.0: compose itself refuses to start without ELP_API_KEY, and the
    settings it passes would make the server refuse too (one log line) if the key were empty."""
    environment = compose()["services"]["elp-server"]["environment"]
    assert re.fullmatch(r"\$\{ELP_API_KEY:\?[^}]+\}", environment["ELP_API_KEY"]), environment["ELP_API_KEY"]
    assert "ELP_INSECURE_OPEN_ADMIN" not in environment and "ELP_ALLOW_UNAUTHENTICATED_BIND" not in environment
    from server.security import bind_refusal

    values = {key[4:].lower(): value for key, value in environment.items() if "${" not in str(value)}
    assert bind_refusal(Settings(**values)) is not None
    assert bind_refusal(Settings(**values, api_key="from-the-shell")) is None


def _metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b(elp_[a-z_]+)", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) if n not in EXPORTED_METRIC_NAMES else n for n in names}


def test_dashboard_queries_only_exported_metrics() -> None:
    dashboards = list(DASHBOARDS.glob("*.json"))
    assert dashboards
    used: set[str] = set()
    for path in dashboards:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                used |= _metric_names(target["expr"])
    assert used and used <= set(EXPORTED_METRIC_NAMES), used - set(EXPORTED_METRIC_NAMES)


def test_the_latency_panel_shows_every_task_route() -> None:
    """The endpoints the latency panel selects: every task's route and the OpenAI-compatible ones (a task added to
    the registry must appear there too)."""
    from elp.tasks import TASKS
    from server.openai_audio import OPENAI_TASK_OF_PATH

    dashboard = json.loads((DASHBOARDS / "elp-server.json").read_text())
    [panel] = [p for p in dashboard["panels"] if p["title"].startswith("Request latency")]
    selected = {tuple(re.findall(r'endpoint=~"([^"]+)"', target["expr"])[0].split("|")) for target in panel["targets"]}
    expected = {spec.endpoint for spec in TASKS} | {f"openai_{spec.openai_audio.route}"
                                                    for spec in OPENAI_TASK_OF_PATH.values()}
    assert all(set(endpoints) == expected for endpoints in selected), (selected, expected)


@pytest.mark.anyio
async def test_exported_metric_names_are_really_exported(tiny_store, tmp_path) -> None:
    from tests.server.helpers import make_settings, running_app

    async with running_app(make_settings(*tiny_store, tmp_path)) as (_, client):
        text = (await client.get("/metrics")).text
    for name in EXPORTED_METRIC_NAMES:
        assert re.search(rf"^# TYPE {name}", text, re.M) or re.search(rf"^# TYPE {name.removesuffix('_total')} ",
                                                                     text, re.M), name


def _dockerfile_command() -> list[str]:
    entrypoint, command = [], []
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT"):
            entrypoint = json.loads(line.removeprefix("ENTRYPOINT").strip())
        elif line.startswith("CMD"):
            command = json.loads(line.removeprefix("CMD").strip())
    return entrypoint + command


def test_dockerfile_runs_as_non_root_with_healthcheck() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert re.search(r"^ARG BASE_IMAGE=", text, re.M) and "TORCH_INDEX_URL" in text
    # the compiled beam search is compiled as that user into a cache it can read, not at each start
    assert text.index("NUMBA_CACHE_DIR=/home/") > text.index("\nUSER ") < text.index("compiled import warm_up")


@pytest.mark.slow  # a real server process (28 s on 2 shared cores)
@pytest.mark.integration
def test_image_entry_command_starts_the_server(tiny_store, tmp_path) -> None:
    """The same command line as the image (``elp-server`` + CMD) with the image's env, locally."""
    command = _dockerfile_command()
    assert command[0] == "elp-server"
    if shutil.which("elp-server") is None:  # not pip-installed here: the same entry point via -m
        command = ["python", "-m", "server", *command[1:]]
    port = free_port()
    env = {"ELP_HOST": "127.0.0.1", "ELP_PORT": str(port), "ELP_BACKBONE": str(tiny_store[0]),
           "ELP_ADAPTERS_DIR": str(tiny_store[1]), "ELP_SPEAKERS_DIR": str(tmp_path / "speakers")}
    with server_process(command, env=env, port=port):
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200, shlex.join(command)


JEMALLOC_LINK = "/usr/local/lib/libjemalloc.so.2"


def test_jemalloc_is_installed_but_not_preloaded_and_the_compose_file_names_its_path() -> None:
    """The opt-in allocator: the image links it at one path on every base, compose names that path, nothing
    preloads it by default (it failed the rule for a default: benchmarks/README.md, "jemalloc")."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"apt-get install[^\n]*\blibjemalloc2\b", dockerfile)
    assert f"-name libjemalloc.so.2 -print -quit)\" {JEMALLOC_LINK}" in dockerfile
    assert not re.search(r"^ENV[^\n]*LD_PRELOAD", dockerfile, re.M)
    assert "LD_PRELOAD" not in compose()["services"]["elp-server"]["environment"]
    assert f"# LD_PRELOAD: {JEMALLOC_LINK}" in COMPOSE.read_text()


def _jemalloc_here() -> str | None:
    found = [os.environ.get("ELP_TEST_JEMALLOC", ""), JEMALLOC_LINK, *glob.glob("/usr/lib/*/libjemalloc.so.2")]
    return next((path for path in found if path and os.path.exists(path)), None)


@pytest.mark.slow  # a real server process
@pytest.mark.integration
@pytest.mark.skipif(_jemalloc_here() is None, reason="no libjemalloc.so.2 here (apt: libjemalloc2)")
def test_the_entry_command_serves_with_jemalloc_preloaded(tiny_store, tmp_path) -> None:
    command = _dockerfile_command()
    if shutil.which("elp-server") is None:
        command = ["python", "-m", "server", *command[1:]]
    port = free_port()
    env = {"ELP_HOST": "127.0.0.1", "ELP_PORT": str(port), "ELP_BACKBONE": str(tiny_store[0]),
           "ELP_ADAPTERS_DIR": str(tiny_store[1]), "ELP_SPEAKERS_DIR": str(tmp_path / "speakers"),
           "LD_PRELOAD": _jemalloc_here(), "MALLOC_CONF": "background_thread:true"}
    with server_process(command, env=env, port=port) as process:
        assert "libjemalloc" in Path(f"/proc/{process.pid}/maps").read_text()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
