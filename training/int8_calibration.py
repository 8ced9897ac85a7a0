"""Make an int8 activation calibration (``elp.backbones.calibration``) from corpus manifests.

Why here and not in ``elp``: choosing and reading a corpus' clips is training-side work (the project's
validated manifest reader lives in ``training.data``); the server only finds and loads the file. The
shipped file uses the TRAIN split of every task, never a test or held-out suite:

    python -m training.int8_calibration models/whisper-base data/corpus/{asr,emotion,intent,verification}.jsonl \\
        --split train --clips 48 --seed 0 --keep-float 3.fc2 --out elp/backbones/calibration/
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

from elp.backbones.calibration import CALIBRATION_FILE, Int8Calibration, linear_input_maxima
from training.data.manifest import filter_split, read_manifest
from training.dataset import load_audio


def manifest_waveforms(manifest: Path, split: str, clips: int, sample_rate: int, seed: int | None = None
                       ) -> list[torch.Tensor]:
    """``clips`` clips of ``split`` in a corpus manifest: the first ones, or a ``seed``-ed random sample
    (a manifest is ordered by speaker: the first clips are few voices)."""
    in_split = filter_split(read_manifest(manifest), split)
    chosen = random.Random(seed).sample(in_split, min(clips, len(in_split))) if seed is not None else in_split[:clips]
    if not chosen:
        raise ValueError(f"no {split!r} clips in {manifest}")
    return [torch.from_numpy(load_audio(row.path, sample_rate)) for row in chosen]


def mixed_waveforms(manifests: list[Path], split: str, clips_each: int, sample_rate: int, seed: int
                    ) -> list[torch.Tensor]:
    """``clips_each`` seeded clips of ``split`` from every manifest: the maxima must cover every task's
    speech (emotional speech drives 4.fc2 / 5.fc2 inputs to 35-60x what ASR clips reach)."""
    return [wave for manifest in manifests
            for wave in manifest_waveforms(manifest, split, clips_each, sample_rate, seed)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backbone")
    parser.add_argument("manifests", type=Path, nargs="+", help="corpus JSONLs (one per task)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--clips", type=int, default=48, help="clips per manifest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-float", nargs="*", default=[], help='Linears kept float32, e.g. "3.fc2"')
    parser.add_argument("--out", type=Path, default=None,
                        help=f"file or folder (default: <backbone>/{CALIBRATION_FILE})")
    args = parser.parse_args(argv)
    from elp.backbones import load_backbone

    backbone = load_backbone(args.backbone)
    waves = mixed_waveforms(args.manifests, args.split, args.clips, backbone.sample_rate, args.seed)
    maxima = linear_input_maxima(backbone, waves)
    unknown = set(args.keep_float) - set(maxima)
    if unknown:
        parser.error(f"not an int8-eligible Linear of this backbone: {sorted(unknown)}")
    source = (f"{' '.join(path.name for path in args.manifests)} split {args.split}, "
              f"{args.clips} clips each (seed {args.seed})")
    calibration = Int8Calibration(maxima, set(args.keep_float), backbone.identity.fingerprint, source)
    print(calibration.save(args.out or Path(args.backbone) / CALIBRATION_FILE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
