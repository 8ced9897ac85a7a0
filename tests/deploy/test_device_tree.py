"""scripts/device_tree.sh in a scratch repository: slim untracks the big files under adapters_store/ and
docs/ (kept on disk and ignored, so they do not travel), restore puts back exactly what it took."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "device_tree.sh"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _tree(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(repo / "scripts" / "device_tree.sh"), *args], cwd=repo, capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "device_tree.sh")
    for path, size in {"adapters_store/big/adapter_model.safetensors": 2_000_000,
                       "adapters_store/big/adapter_config.json": 100, "docs/small.png": 10,
                       "data_kept.bin": 3_000_000}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"x" * size)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path


def test_slim_untracks_the_big_store_files_and_restore_puts_them_back(repo: Path) -> None:
    tracked = set(_git(repo, "ls-files").split())
    result = _tree(repo, "slim")
    assert result.returncode == 0, result.stderr
    after = set(_git(repo, "ls-files").split())
    assert tracked - after == {"adapters_store/big/adapter_model.safetensors"}  # only the big store file
    assert (repo / "adapters_store/big/adapter_model.safetensors").is_file()  # still on disk
    assert _git(repo, "ls-files", "--others", "--exclude-standard").strip() == ""  # and it does not travel
    assert "untracked 1 files" in result.stdout

    assert _tree(repo, "restore").returncode == 0
    assert set(_git(repo, "ls-files").split()) == tracked
    assert _git(repo, "status", "--porcelain").strip() == ""
    assert "adapter_model" not in (repo / ".git/info/exclude").read_text()


def test_slim_refuses_a_staged_change(repo: Path) -> None:
    (repo / "docs/small.png").write_bytes(b"y")
    _git(repo, "add", "docs/small.png")
    result = _tree(repo, "slim")
    assert result.returncode == 1 and "staged" in result.stderr
    assert "adapters_store/big/adapter_model.safetensors" in _git(repo, "ls-files")
