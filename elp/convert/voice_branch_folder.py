"""What the voice-branch converters share: the branch folder they write and their command line.

A branch folder is ``voice_branch.safetensors`` + ``voice_branch.json`` (the branch config, the source file's
name and sha256, its licence); ``training.voice_fusion`` adds it to a speaker set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from elp.errors import ConfigError


def installed_package_file(package: str, relative: str, hint: str) -> Path:
    """A file shipped inside an installed package, found without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{package} is not installed: {hint}")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def write_branch_folder(branch: nn.Module, out: Path, source: Path, licence: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in branch.state_dict().items()}, out / "voice_branch.safetensors")
    record = {"config": branch.config.to_dict(), "converted_from": source.name, "licence": licence,
              "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    (out / "voice_branch.json").write_text(json.dumps(record, indent=1))


def converter_main(argv: list[str] | None, description: str, source_flag: str, source_help: str,
                   installed: Callable[[], Path], convert: Callable[[Path], nn.Module], licence: str) -> int:
    """``--out FOLDER [--SOURCE_FLAG FILE]``: convert the file (default: the installed package's) and write it."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", required=True, help="branch folder to write")
    p.add_argument(f"--{source_flag}", dest="source", help=source_help)
    args = p.parse_args(argv)
    source = Path(args.source) if args.source else installed()
    write_branch_folder(convert(source), Path(args.out), source, licence)
    print(f"wrote {args.out}")
    return 0
