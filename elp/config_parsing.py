"""Strict construction of a config dataclass from JSON values (torch-free; every config module uses it)."""

from __future__ import annotations

import dataclasses
from typing import Any

from elp.errors import ConfigError


def build_strict(kind: type, values: Any, where: str) -> Any:
    """``kind(**values)``, refusing a non-object, unknown keys and missing or ill-typed fields with a
    ``ConfigError`` that names ``where`` (a newer or foreign file is refused, not half-used)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a JSON object")
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown keys in {where}: {unknown}")
    try:
        return kind(**values)
    except TypeError as exc:
        raise ConfigError(f"invalid {where}: {exc}") from exc
