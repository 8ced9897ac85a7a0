"""Add a trained voice branch (``training.distill_voice``) to a speaker set and choose its weight.

The set's embedding becomes ``[sqrt(1 - v) * encoder part, sqrt(v) * voice branch]`` (then the pitch
coordinates, if any), so the served cosine is ``((1 - v) cos_encoder + v cos_branch + w cos_pitch) /
(1 + w)``. The three cosines of every validation trial are computed once; the grid of ``v`` (the voice
weight) and ``w`` (the set's pitch weight, or none) is scored by the EER of the pooled validation
trials (every ``--valid`` list together), ties to the smaller ``v`` and then the smaller ``w`` (the least
change). ``--guard`` lists (e.g. the synthetic validation trials) are scored at every grid point but not
pooled: a point whose guard EER is above ``--guard-max-eer`` is not chosen. Only validation trial lists
are read; the threshold is left to ``training.verify_calibrate``.

``--second``: the set keeps its branch and the new one joins as its second (``HeadConfig.second_voice_*``):
the grid is then over the second branch's weight ``v2``, the cosine ``(1 - v2) * (the set's own mix) +
v2 cos_second``, so the set's encoder/branch ratio stays as it was chosen. Fuse into the uncentred set and
centre afterwards (``training.verify_norm centre``): the centre depends on the whole embedding. Without
``--second`` a centred set may be the source: its encoder part is scored uncentred and the fitted set is
written uncentred, to be centred again.

    python -m training.voice_fusion adapters_store/verify-default --branch data/candidates/voice-branch \
        --valid human=data/human/verification_trials_valid.txt \
        realvox=data/realvox-valid/verification_trials_valid.txt \
        --out data/candidates/verify-voice
    python -m training.voice_fusion data/candidates/verify-ge2e --second --branch data/candidates/dvector-branch \
        --valid ... --weights 0 0.1 0.2 0.3 0.4 0.5 --out data/candidates/verify-dual
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
    """The set without pitch coordinates, a voice branch or a centre: the encoder's embedding alone."""
    config = copy.deepcopy(source.config)
    config.head.pitch_weight, config.head.voice_weight, config.head.centred = 0.0, 0.0, False
    config.head.second_voice_kind, config.head.second_voice_weight = "", 0.0
    base = AdapterSet(config)
    keep = {k: v for k, v in source.state_dict().items()
            if not k.startswith(("head.prosody_norm.", "head.voice.", "head.second_voice.", "head.centre"))}
    base.load_state_dict(keep)
    return base


@torch.no_grad()
def trial_cosines(model: MultiAdapterModel, source: AdapterSet, branch: torch.nn.Module, trials: list[Trial],
                  second: bool = False) -> dict:
    """Per trial: label, encoder cosine, branch cosine and the pitch term's cosine (the set's angle); with
    ``second`` the branch's cosine is ``second`` and ``voice`` is the set's own branch's. ``model`` serves the
    set's encoder part under ``KEY``."""
    clips = trial_clip_rows(trials)
    predictions, _ = predict_rows(model, KEY, clips)
    encoder = {c.path: predictions[c.id].embedding.float() for c in clips}
    voice, own, pitch = {}, {}, {}
    head = source.head
    for clip in clips:
        wave = torch.from_numpy(load_audio(clip.path))
        voice[clip.path] = branch(wave.unsqueeze(0), torch.tensor([wave.numel()]))[0]
        if second:
            own[clip.path] = head.voice(wave.unsqueeze(0), torch.tensor([wave.numel()]))[0].float()
        if source.config.head.pitch_weight > 0:
            z = head.prosody_norm(clip_prosody(wave).unsqueeze(0))[0, PITCH_INDEX]
            pitch[clip.path] = float(z)
    angle = source.config.head.pitch_angle
    pairs = [(t.path_a, t.path_b) for t in trials]
    cosine = lambda vectors: np.array([float(vectors[a] @ vectors[b]) for a, b in pairs])  # noqa: E731
    return {
        "labels": np.array([t.label for t in trials]),
        "encoder": cosine(encoder),
        "voice": cosine(own) if second else cosine(voice),
        "second": cosine(voice) if second else np.zeros(len(pairs)),
        "pitch": np.array([math.cos(angle * (pitch[a] - pitch[b])) if pitch else 0.0 for a, b in pairs]),
    }


def fused(cosines: dict, voice_weight: float, pitch_weight: float, second_weight: float = 0.0) -> np.ndarray:
    """The served cosine: ``(1 - v2) ((1 - v) cos_encoder + v cos_branch) + v2 cos_second``, then the pitch term
    (``v2`` = ``second_weight``; without a second branch it is 0)."""
    own = (1 - voice_weight) * cosines["encoder"] + voice_weight * cosines["voice"]
    mixed = (1 - second_weight) * own + second_weight * cosines["second"]
    return (mixed + pitch_weight * cosines["pitch"]) / (1 + pitch_weight)


def eer_percent(cosines: dict, voice_weight: float, pitch_weight: float, own_voice_weight: float = 0.0) -> float:
    """With ``own_voice_weight`` (``--second``) the grid's weight is the second branch's, the set's own mix fixed."""
    scores = fused(cosines, own_voice_weight, pitch_weight, voice_weight) if own_voice_weight > 0 \
        else fused(cosines, voice_weight, pitch_weight)
    return round(100 * compute_eer(scores, cosines["labels"]).eer, 2)


def fitted_set(source: AdapterSet, branch: torch.nn.Module, best: dict, second: bool) -> AdapterSet:
    """The source set with the chosen weights and the branch: its voice branch, or with ``second`` its second.
    A centred source comes out uncentred: its centre was the mean of the embedding the branch replaces."""
    config = copy.deepcopy(source.config)
    config.head.pitch_weight, config.head.centred = best["pitch_weight"], False
    fields = head_fields(branch.config.to_dict())
    prefix = "head.second_voice." if second else "head.voice."
    if second:
        config.head.voice_weight = round((1 - best["voice_weight"]) * source.config.head.voice_weight, 6)
        config.head.second_voice_weight = best["voice_weight"]
        fields = {f"second_{name}": value for name, value in fields.items()}
        if best["voice_weight"] == 0:
            config.head.second_voice_kind, fields = "", {}
    else:
        config.head.voice_weight = best["voice_weight"]
    for field, value in fields.items():
        setattr(config.head, field, value)
    fitted = AdapterSet(config)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith((prefix, "head.centre"))}
    if best["pitch_weight"] == 0:
        state = {k: v for k, v in state.items() if not k.startswith("head.prosody_norm.")}
    if best["voice_weight"] > 0:
        state |= {f"{prefix}{k}": v for k, v in branch.state_dict().items()}
    fitted.load_state_dict(state, strict=True)
    return fitted


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter", help="verification adapter-set folder")
    p.add_argument("--branch", required=True,
                   help="folder written by training.distill_voice train or an elp.convert branch converter")
    p.add_argument("--second", action="store_true", help="add the branch beside the set's own (module docstring)")
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
    own_weight = source.config.head.voice_weight if args.second else 0.0
    if args.second and (own_weight <= 0 or source.config.head.second_voice_weight > 0 or source.config.head.centred):
        raise SystemExit("--second needs an uncentred set with one voice branch and no second one")
    if args.second and max(args.weights) >= 1:
        raise SystemExit("--second weights must be below 1 (the set's own mix keeps the rest)")
    parts = {name: read_speech_trials(path, True) for name, path in (spec.split("=", 1) for spec in args.valid)}
    model = MultiAdapterModel(load_backbone(args.backbone, device=args.device))
    model.add_adapter_set(KEY, encoder_part(source))
    guards = {name: read_speech_trials(path, True) for name, path in (spec.split("=", 1) for spec in args.guard)}
    cosines = {name: trial_cosines(model, source, branch, trials, args.second) for name, trials in parts.items()}
    guard_cosines = {name: trial_cosines(model, source, branch, trials, args.second) for name, trials in guards.items()}
    pooled = {key: np.concatenate([c[key] for c in cosines.values()])
              for key in ("labels", "encoder", "voice", "second", "pitch")}
    pitch_weights = sorted({0.0, source.config.head.pitch_weight})
    grid = [{"voice_weight": v, "pitch_weight": w, "pooled_eer": eer_percent(pooled, v, w, own_weight),
             **{f"{name}_eer": eer_percent(c, v, w, own_weight) for name, c in (cosines | guard_cosines).items()}}
            for v in sorted(set(args.weights)) for w in pitch_weights]
    for row in grid:
        print(json.dumps(row), flush=True)
    eligible = [g for g in grid if all(g[f"{name}_eer"] <= args.guard_max_eer for name in guards)]
    if not eligible:
        raise SystemExit(f"no weight keeps the guard trials ({', '.join(guards)}) at or under {args.guard_max_eer}%")
    best = min(eligible, key=lambda g: (g["pooled_eer"], g["voice_weight"], g["pitch_weight"]))
    print(json.dumps({"chosen": best}), flush=True)

    fitted = fitted_set(source, branch, best, args.second)
    record = json.loads((Path(args.branch) / "voice_branch.json").read_text())
    step = "second_voice_fusion" if args.second else "voice_fusion"
    fitted.config.training = (fitted.config.training or {}) | {step: {
        "grid": grid, "chosen": best, "valid": args.valid,
        "guard": args.guard, "guard_max_eer": args.guard_max_eer,
        "branch": {k: record[k] for k in BRANCH_RECORD if k in record}}}
    fitted.save(args.out)
    if args.report:
        Path(args.report).write_text(json.dumps({"grid": grid, "chosen": best}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
