"""Write a GE2E speaker encoder checkpoint as a voice-branch folder (``voice_branch.json`` + safetensors).

Why: the published GE2E weights (resemblyzer's ``pretrained.pt``, Apache-2.0, trained on thousands of
real speakers) come as a pickled training checkpoint. A set must be data, so the LSTM and output layer
are read once here with ``torch.load(weights_only=True)`` (no code runs) and written as safetensors;
``training.voice_fusion`` then adds the folder to a speaker set like a distilled branch.

    python -m elp.convert.ge2e_branch --out data/candidates/ge2e-branch \
        [--checkpoint .../resemblyzer/pretrained.pt]   # default: the installed resemblyzer's
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from elp.errors import ConfigError
from elp.heads.ge2e import Ge2eBranch, Ge2eConfig

LICENCE = "Apache-2.0 (resemblyzer, https://github.com/resemble-ai/Resemblyzer)"


def installed_checkpoint() -> Path:
    """The checkpoint shipped inside the installed ``resemblyzer`` package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("resemblyzer is not installed: pip install resemblyzer, or pass --checkpoint")
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


def branch_from_checkpoint(path: Path) -> Ge2eBranch:
    """Load the LSTM and linear layer of a GE2E checkpoint; the loss's scale and bias are not needed."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("model_state", checkpoint)
    hidden = state["lstm.weight_hh_l0"].shape[1]
    layers = sum(1 for key in state if key.startswith("lstm.weight_ih_l"))
    branch = Ge2eBranch(Ge2eConfig(hidden, layers, state["linear.weight"].shape[0]))
    branch.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})
    return branch.eval()


def write_branch(branch: Ge2eBranch, out: Path, source: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in branch.state_dict().items()}, out / "voice_branch.safetensors")
    record = {"config": branch.config.to_dict(), "converted_from": source.name, "licence": LICENCE,
              "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    (out / "voice_branch.json").write_text(json.dumps(record, indent=1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="branch folder to write")
    p.add_argument("--checkpoint", help="a GE2E checkpoint (default: the installed resemblyzer's)")
    args = p.parse_args(argv)
    source = Path(args.checkpoint) if args.checkpoint else installed_checkpoint()
    write_branch(branch_from_checkpoint(source), Path(args.out), source)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
