"""Write a GE2E speaker encoder checkpoint as a voice-branch folder (``voice_branch.json`` + safetensors).

Why: the published GE2E weights (resemblyzer's ``pretrained.pt``, Apache-2.0, trained on thousands of
real speakers) come as a pickled training checkpoint. A set must be data, so the LSTM and output layer
are read once here with ``torch.load(weights_only=True)`` (no code runs) and written as safetensors;
``training.voice_fusion`` then adds the folder to a speaker set like a distilled branch.

    python -m elp.convert.ge2e_branch --out data/candidates/ge2e-branch \
        [--checkpoint .../resemblyzer/pretrained.pt]   # default: the installed resemblyzer's
"""

from __future__ import annotations

from pathlib import Path

import torch

from elp.convert.voice_branch_folder import converter_main, installed_package_file, write_branch_folder
from elp.heads.ge2e import Ge2eBranch, Ge2eConfig

LICENCE = "Apache-2.0 (resemblyzer, https://github.com/resemble-ai/Resemblyzer)"


def installed_checkpoint() -> Path:
    """The checkpoint shipped inside the installed ``resemblyzer`` package."""
    return installed_package_file("resemblyzer", "pretrained.pt", "pip install resemblyzer, or pass --checkpoint")


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
    write_branch_folder(branch, out, source, LICENCE)


def main(argv: list[str] | None = None) -> int:
    return converter_main(argv, __doc__.splitlines()[0], "checkpoint",
                          "a GE2E checkpoint (default: the installed resemblyzer's)", installed_checkpoint,
                          branch_from_checkpoint, LICENCE)


if __name__ == "__main__":
    raise SystemExit(main())
