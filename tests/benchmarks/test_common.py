"""Benchmark plumbing that a GPU run depends on."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.common import REPO_ROOT, child_env


def test_child_processes_keep_the_callers_pythonpath(tmp_path, monkeypatch) -> None:
    """Servers the benchmarks start must import packages installed with ``pip --target`` (the GPU
    machine's wheels): the repository goes first, the caller's entries stay."""
    (tmp_path / "only_on_callers_path.py").write_text("VALUE = 42\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    env = child_env({"EXTRA_FLAG": "1"})
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT)
    assert env["EXTRA_FLAG"] == "1"
    out = subprocess.run(
        [sys.executable, "-c", "import only_on_callers_path, benchmarks; print(only_on_callers_path.VALUE)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "42"
