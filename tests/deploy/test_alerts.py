"""The shipped Prometheus alerts load (promtool check rules), fire where their unit cases say and stay quiet
where they say (promtool test rules, tests/deploy/alerts_test.yml), and read only series the server exports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from server.metrics import EXPORTED_METRIC_NAMES
from tests.deploy.test_deploy import _metric_names

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES = REPO_ROOT / "deploy" / "prometheus-rules" / "elp-alerts.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus package) not installed")


def test_alerts_read_only_exported_metrics_and_are_loaded_by_prometheus() -> None:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    used = set().union(*(_metric_names(rule["expr"]) for rule in rules))
    assert used and used <= set(EXPORTED_METRIC_NAMES), used - set(EXPORTED_METRIC_NAMES)
    config = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus.yml").read_text())
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus-rules:/etc/prometheus/rules:ro" in mounts
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]


@needs_promtool
def test_promtool_accepts_the_rules_and_their_unit_cases_pass() -> None:
    checked = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).parent)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
