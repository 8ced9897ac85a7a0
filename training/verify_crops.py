"""Short-probe trial lists cut from existing ones: the first clip of every trial cropped to ``d`` seconds.

Why: a verification threshold is judged at the duration of the shorter clip of a pair, and real users send
probes of a second or less. The suites' real-voice trials have clips of 1 s or more (the human suite) or come
from one channel (realvox-short, game readers). Cropping each trial's first clip to its loudest ``d``-second
window gives the same voices, channels and labels at a known short duration, so a duration-dependent
threshold (``training.verify_durations``) is chosen on every validation population at every duration.
The window is the one with the most energy (10 ms hops), so it holds speech, and no seed is needed.
Trials whose first clip is not longer than ``d`` are left out: they are already in the uncropped list.

    python -m training.verify_crops --trials human_valid=data/human/verification_trials_valid.txt \
        realvox_valid=data/realvox-valid/verification_trials_valid.txt --durations 0.5 0.8 1.2 --out data/verify-crops

writes ``data/verify-crops/<name>_d<d>.txt`` (paths relative to ``--out``), the cropped FLACs under
``<out>/audio/<name>/``, and ``crops.json`` (sources, counts, sha256 of every list). Any split may be cropped;
the list's name says its role (only validation lists may choose anything).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from training.data.manifest import read_trials
from training.dataset import load_audio

SAMPLE_RATE = 16_000
HOP = SAMPLE_RATE // 100  # 10 ms


def loudest_window(wave: np.ndarray, samples: int) -> np.ndarray:
    """The ``samples``-long window of ``wave`` with the most energy, its start on a 10 ms hop."""
    if wave.size <= samples:
        return wave
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    starts = np.arange(0, wave.size - samples + 1, HOP)
    best = int(starts[np.argmax(energy[starts + samples] - energy[starts])])
    return wave[best: best + samples]


def crop_name(path: str, duration: float) -> str:
    """A file name unique to the source clip (its path's hash) and the duration."""
    digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
    return f"{Path(path).stem}-{digest}-d{duration:g}.flac"


def crop_list(name: str, trials_file: str, duration: float, out: Path) -> dict:
    """Write the cropped list of one trial file at one duration; returns its counts."""
    samples = round(duration * SAMPLE_RATE)
    audio_dir = out / "audio" / name
    audio_dir.mkdir(parents=True, exist_ok=True)
    lines, skipped = [], 0
    for trial in read_trials(trials_file):
        if sf.info(trial.path_a).frames <= samples:
            skipped += 1
            continue
        target = audio_dir / crop_name(trial.path_a, duration)
        if not target.exists():
            partial = target.with_suffix(".part")
            sf.write(partial, loudest_window(load_audio(trial.path_a), samples), SAMPLE_RATE, format="FLAC",
                     subtype="PCM_16")
            partial.replace(target)
        lines.append(f"{trial.label} {target.relative_to(out)} {os.path.relpath(trial.path_b, out)}")
    listing = out / f"{name}_d{duration:g}.txt"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"source": trials_file, "duration_s": duration, "trials": len(lines),
            "genuine": sum(line.startswith("1 ") for line in lines), "left_out_not_longer": skipped,
            "sha256": hashlib.sha256(listing.read_bytes()).hexdigest()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", nargs="+", required=True, metavar="NAME=FILE", help="trial lists to crop")
    p.add_argument("--durations", type=float, nargs="+", default=[0.5, 0.8, 1.2])
    p.add_argument("--out", default="data/verify-crops")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    for spec in args.trials:
        name, _, trials_file = spec.partition("=")
        if not trials_file:
            raise SystemExit(f"--trials wants NAME=FILE, got {spec!r}")
        for duration in args.durations:
            report[f"{name}_d{duration:g}"] = crop_list(name, trials_file, duration, out)
            print(json.dumps({f"{name}_d{duration:g}": report[f"{name}_d{duration:g}"]}), flush=True)
    manifest = out / "crops.json"
    previous = json.loads(manifest.read_text()) if manifest.exists() else {}
    manifest.write_text(json.dumps(previous | report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
