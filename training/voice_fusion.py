"""Add a trained voice branch (``training.distill_voice``) to a speaker set and choose its weight.

The set's embedding becomes ``[sqrt(1 - v) * encoder part, sqrt(v) * voice branch]`` (then the pitch
coordinates, if any), so the served cosine is ``((1 - v) cos_encoder + v cos_branch + w cos_pitch) /
(1 + w)``. The three cosines of every validation trial are computed once; the grid of ``v`` (the voice
weight) and ``w`` (the set's pitch weight, or none) is scored by the EER of the pooled validation
trials (every ``--valid`` list together), ties to the smaller ``v`` and then the smaller ``w`` (the least
change). ``--guard`` lists (e.g. the synthetic validation trials) are scored at every grid point but not
pooled: a point whose guard EER is above ``--guard-max-eer`` is not chosen. Only validation trial lists
are read; the threshold is left to ``training.verify_calibrate``.

    python -m training.voice_fusion adapters_store/verify-default --branch data/candidates/voice-branch \
        --valid human=data/human/verification_trials_valid.txt \
        realvox=data/realvox-valid/verification_trials_valid.txt \
        --out data/candidates/verify-voice
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.heads.pooled import PITCH_INDEX
from elp.heads.prosody import clip_prosody
from elp.heads.voice import branch_from_record, head_fields
from elp.tasks import get_task
from training.data.manifest import Trial
from training.dataset import load_audio
from training.evaluation import predict_rows, trial_clip_rows
from training.metrics import compute_eer
from training.verify_calibrate import read_speech_trials

KEY = "set"
BRANCH_RECORD = ("config", "epoch", "eer", "args", "converted_from", "licence", "source_sha256")


def load_branch(folder: str | Path) -> torch.nn.Module:
    """A distilled (``training.distill_voice``) or converted (``elp.convert.ge2e_branch``) branch folder."""
    record = json.loads((Path(folder) / "voice_branch.json").read_text())
    branch = branch_from_record(record["config"])
    branch.load_state_dict(load_file(Path(folder) / "voice_branch.safetensors"))
    return branch.eval()


def encoder_part(source: AdapterSet) -> AdapterSet:
    """The set without pitch coordinates or a voice branch: the encoder's embedding alone."""
    config = copy.deepcopy(source.config)
    config.head.pitch_weight, config.head.voice_weight = 0.0, 0.0
    base = AdapterSet(config)
    keep = {k: v for k, v in source.state_dict().items()
            if not k.startswith(("head.prosody_norm.", "head.voice."))}
    base.load_state_dict(keep)
    return base


@torch.no_grad()
def trial_cosines(model: MultiAdapterModel, source: AdapterSet, branch: torch.nn.Module, trials: list[Trial]) -> dict:
    """Per trial: label, encoder cosine, branch cosine and the pitch term's cosine (the set's angle).
    ``model`` serves the set's encoder part under ``KEY``."""
    clips = trial_clip_rows(trials)
    predictions, _ = predict_rows(model, KEY, clips)
    encoder = {c.path: predictions[c.id].embedding.float() for c in clips}
    voice, pitch = {}, {}
    head = source.head
    for clip in clips:
        wave = torch.from_numpy(load_audio(clip.path))
        voice[clip.path] = branch(wave.unsqueeze(0), torch.tensor([wave.numel()]))[0]
        if source.config.head.pitch_weight > 0:
            z = head.prosody_norm(clip_prosody(wave).unsqueeze(0))[0, PITCH_INDEX]
            pitch[clip.path] = float(z)
    angle = source.config.head.pitch_angle
    pairs = [(t.path_a, t.path_b) for t in trials]
    return {
        "labels": np.array([t.label for t in trials]),
        "encoder": np.array([float(encoder[a] @ encoder[b]) for a, b in pairs]),
        "voice": np.array([float(voice[a] @ voice[b]) for a, b in pairs]),
        "pitch": np.array([math.cos(angle * (pitch[a] - pitch[b])) if pitch else 0.0 for a, b in pairs]),
    }


def fused(cosines: dict, voice_weight: float, pitch_weight: float) -> np.ndarray:
    mixed = (1 - voice_weight) * cosines["encoder"] + voice_weight * cosines["voice"]
    return (mixed + pitch_weight * cosines["pitch"]) / (1 + pitch_weight)


def eer_percent(cosines: dict, voice_weight: float, pitch_weight: float) -> float:
    return round(100 * compute_eer(fused(cosines, voice_weight, pitch_weight), cosines["labels"]).eer, 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter", help="verification adapter-set folder")
    p.add_argument("--branch", required=True, help="folder written by training.distill_voice train")
    p.add_argument("--valid", nargs="+", required=True, metavar="NAME=TRIALS", help="validation trial lists")
    p.add_argument("--guard", nargs="*", default=[], metavar="NAME=TRIALS",
                   help="validation trials that must stay at or under --guard-max-eer (not pooled)")
    p.add_argument("--guard-max-eer", type=float, default=100.0, help="percent")
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    p.add_argument("--out", required=True)
    p.add_argument("--report", help="write the grid as JSON here too")
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    # eval: the pitch standardiser must not update its statistics while it reads the clips
    source, branch = AdapterSet.load(args.adapter).eval(), load_branch(args.branch)
    if get_task(source.task).evaluation != "trials":
        raise SystemExit(f"{args.adapter} is a {source.task} set, not one scored on speaker trials")
    parts = {name: read_speech_trials(path, True) for name, path in (spec.split("=", 1) for spec in args.valid)}
    model = MultiAdapterModel(load_backbone(args.backbone, device=args.device))
    model.add_adapter_set(KEY, encoder_part(source))
    guards = {name: read_speech_trials(path, True) for name, path in (spec.split("=", 1) for spec in args.guard)}
    cosines = {name: trial_cosines(model, source, branch, trials) for name, trials in parts.items()}
    guard_cosines = {name: trial_cosines(model, source, branch, trials) for name, trials in guards.items()}
    pooled = {key: np.concatenate([c[key] for c in cosines.values()])
              for key in ("labels", "encoder", "voice", "pitch")}
    pitch_weights = sorted({0.0, source.config.head.pitch_weight})
    grid = [{"voice_weight": v, "pitch_weight": w, "pooled_eer": eer_percent(pooled, v, w),
             **{f"{name}_eer": eer_percent(c, v, w) for name, c in (cosines | guard_cosines).items()}}
            for v in sorted(set(args.weights)) for w in pitch_weights]
    for row in grid:
        print(json.dumps(row), flush=True)
    eligible = [g for g in grid if all(g[f"{name}_eer"] <= args.guard_max_eer for name in guards)]
    if not eligible:
        raise SystemExit(f"no weight keeps the guard trials ({', '.join(guards)}) at or under {args.guard_max_eer}%")
    best = min(eligible, key=lambda g: (g["pooled_eer"], g["voice_weight"], g["pitch_weight"]))
    print(json.dumps({"chosen": best}), flush=True)

    config = copy.deepcopy(source.config)
    config.head.voice_weight, config.head.pitch_weight = best["voice_weight"], best["pitch_weight"]
    for field, value in head_fields(branch.config.to_dict()).items():
        setattr(config.head, field, value)
    fitted = AdapterSet(config)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("head.voice.")}
    if best["pitch_weight"] == 0:
        state = {k: v for k, v in state.items() if not k.startswith("head.prosody_norm.")}
    if best["voice_weight"] > 0:
        state |= {f"head.voice.{k}": v for k, v in branch.state_dict().items()}
    fitted.load_state_dict(state, strict=True)
    record = json.loads((Path(args.branch) / "voice_branch.json").read_text())
    fitted.config.training = (fitted.config.training or {}) | {"voice_fusion": {
        "grid": grid, "chosen": best, "valid": args.valid,
        "guard": args.guard, "guard_max_eer": args.guard_max_eer,
        "branch": {k: record[k] for k in BRANCH_RECORD if k in record}}}
    fitted.save(args.out)
    if args.report:
        Path(args.report).write_text(json.dumps({"grid": grid, "chosen": best}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
