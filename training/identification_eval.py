"""How ``POST /identify`` fares: open-set identification among enrolled speakers, scored as served.

Each suite is a verification manifest (speaker = label). Every draw enrols a seeded random half of its voices
(at least 2) from ``--clips`` clips each (the mean unit embedding, as ``POST /speakers`` stores it); every other
clip of an enrolled voice is a *known* probe, every clip of a voice not enrolled an *unknown* probe. Each probe is
answered by the task itself (:meth:`elp.tasks.identification.IdentificationTask.respond`, the served ranking and
threshold), on served embeddings cached once per clip (``training.verify_norm cache``; clips without a voice,
which the server refuses, are left out). Figures: closed-set rank-1 accuracy of known probes; known probes
identified (named right), given to another enrolled voice, or not named; unknown probes named (false alarms);
and the balanced open-set accuracy (identified rate + unknown rejected rate) / 2.

    python -m training.identification_eval adapters_store/verify-default --cache data/cache/id-verify-default.pt \
        --suite near-valid=data/corpus/verification.jsonl:valid realvox-valid=data/realvox-valid/verification.jsonl \
        --offsets -0.1 -0.05 0 0.05 0.1 0.15
A grid of offsets is refused on suites with test clips: choose on validation, then read test once at the choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from elp.adapter_files import CONFIG_NAME
from elp.config import AdapterSetConfig
from elp.tasks import EnrolledVoice, TaskRequest, get_task
from elp.tasks.identification import IdentificationTask
from training.data.manifest import ManifestRow, read_manifest
from training.dataset import load_audio
from training.evaluation import evaluation_gate
from training.verify_norm import cache

SAMPLE_RATE = 16000
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass
class Voice:
    """One speaker's clips in a suite: unit embeddings and seconds, in manifest order."""

    embeddings: list[torch.Tensor]
    seconds: list[float]


def suite_rows(spec: str) -> tuple[str, list[ManifestRow]]:
    """``NAME=MANIFEST[:SPLIT]`` -> (name, the manifest's rows of that split, or all)."""
    name, _, target = spec.partition("=")
    manifest, separator, split = target.rpartition(":")
    if not separator or split not in SPLITS:
        manifest, split = target, ""
    rows = read_manifest(manifest)
    return name, [row for row in rows if not split or row.split == split]


def speech_only(rows: Sequence[ManifestRow]) -> list[ManifestRow]:
    """The rows whose clip passes the task's speech gate (the server answers the others ``422 no_speech``)."""
    gate = evaluation_gate(get_task("identification").speech_gate)
    if gate is None:
        return list(rows)
    return [row for row in rows if gate.has_speech(load_audio(row.path), SAMPLE_RATE)]


def voices_of(rows: Sequence[ManifestRow], store: dict[str, dict]) -> dict[str, Voice]:
    voices: dict[str, Voice] = {}
    for row in rows:
        voice = voices.setdefault(row.speaker, Voice([], []))
        voice.embeddings.append(torch.nn.functional.normalize(store[row.path]["voice"].float(), dim=0))
        voice.seconds.append(float(row.duration_s))
    return voices


def draw_outcomes(spec: IdentificationTask, config: AdapterSetConfig, voices: dict[str, Voice], clips: int,
                  rng: np.random.Generator, gallery_size: int | None = None,
                  ) -> list[tuple[str | None, str | None, str | None]]:
    """One draw: (truth or None for an unknown voice, closed-set top-1, the served answer's ``speaker``) per probe.
    ``gallery_size`` voices are enrolled (default half of those with enough clips, at least 2); one voice at
    least is always left unknown."""
    eligible = sorted(speaker for speaker, voice in voices.items() if len(voice.embeddings) > clips)
    size = min(gallery_size or max(2, len(eligible) // 2), len(eligible), len(voices) - 1)
    enrolled = sorted(rng.choice(eligible, size=size, replace=False).tolist())
    gallery, probes = [], []
    for speaker in sorted(voices):
        voice = voices[speaker]
        order = rng.permutation(len(voice.embeddings)).tolist() if speaker in enrolled else []
        if order:
            picked = order[:clips]
            mean = torch.nn.functional.normalize(torch.stack([voice.embeddings[i] for i in picked]).mean(dim=0), dim=0)
            gallery.append(EnrolledVoice(speaker, mean, sum(voice.seconds[i] for i in picked)))
        probes += [(speaker if order else None, voice.embeddings[i], voice.seconds[i])
                   for i in (order[clips:] if order else range(len(voice.embeddings)))]
    outcomes = []
    for truth, embedding, seconds in probes:
        answer = spec.respond(TaskRequest(config=config, rows=[SimpleNamespace(embedding=embedding)],
                                          durations_s=[seconds], fields={"top_k": 1}, gallery=gallery))
        outcomes.append((truth, answer["candidates"][0]["speaker"], answer["speaker"]))
    return outcomes


def figures(outcomes: Sequence[tuple[str | None, str | None, str | None]]) -> dict:
    known = [o for o in outcomes if o[0] is not None]
    unknown = [o for o in outcomes if o[0] is None]

    def share(count: int, total: int) -> float | None:
        return round(100.0 * count / total, 2) if total else None

    identified = sum(named == truth for truth, _, named in known)
    rejected = sum(named is None for _, _, named in unknown)
    return {
        "known_probes": len(known), "unknown_probes": len(unknown),
        "rank1": share(sum(top == truth for truth, top, _ in known), len(known)),
        "identified": share(identified, len(known)),
        "misidentified": share(sum(named is not None and named != truth for truth, _, named in known), len(known)),
        "not_named": share(sum(named is None for _, _, named in known), len(known)),
        "false_alarms": share(len(unknown) - rejected, len(unknown)),
        "balanced_accuracy": round(50.0 * (identified / max(len(known), 1) + rejected / max(len(unknown), 1)), 2),
    }


def evaluate(set_dir: str, cache_path: Path, suites: Sequence[str], offsets: Sequence[float], draws: int,
             clips: int, seed: int, backbone: str, gallery_size: int | None = None,
             slopes: Sequence[float] | None = None) -> dict:
    config = AdapterSetConfig.from_dict(json.loads((Path(set_dir) / CONFIG_NAME).read_text(encoding="utf-8")))
    served = get_task("identification")
    assert isinstance(served, IdentificationTask)
    named_rows = [suite_rows(spec) for spec in suites]
    slopes = list(slopes) if slopes is not None else [served.gallery_slope]
    if len(offsets) * len(slopes) > 1 and any(row.split == "test" for _, rows in named_rows for row in rows):
        raise SystemExit("a grid of offsets on test clips: choose on validation suites, then read test at the choice")
    rows_by_suite = {name: speech_only(rows) for name, rows in named_rows}
    store = cache(set_dir, sorted({row.path for rows in rows_by_suite.values() for row in rows}), cache_path, backbone)
    report: dict = {"set": set_dir, "served_offset": served.threshold_offset, "served_slope": served.gallery_slope,
                    "draws": draws, "clips": clips, "seed": seed, "gallery": gallery_size or "half", "suites": {}}
    for name, rows in rows_by_suite.items():
        voices = voices_of(rows, store)
        by_offset = {}
        for offset in offsets:
            for slope in slopes:
                spec = dataclasses.replace(served, threshold_offset=offset, gallery_slope=slope)
                outcomes = [o for draw in range(draws)
                            for o in draw_outcomes(spec, config, voices, clips, np.random.default_rng(seed + draw),
                                                   gallery_size)]
                by_offset[str(offset) if len(slopes) == 1 else f"{offset},slope={slope}"] = figures(outcomes)
        report["suites"][name] = {"voices": len(voices), "clips": len(rows), "by_offset": by_offset}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", help="a verification set (its threshold table judges the probes)")
    parser.add_argument("--cache", type=Path, required=True, help="embedding cache (made or extended here)")
    parser.add_argument("--suite", nargs="+", required=True, metavar="NAME=MANIFEST[:SPLIT]")
    parser.add_argument("--offsets", type=float, nargs="+", help="threshold offsets (default: the served one)")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--clips", type=int, default=3, help="enrolment clips per voice")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gallery", type=int, help="voices enrolled per draw (default: half of them)")
    parser.add_argument("--slopes", type=float, nargs="+",
                        help="threshold rises per ln(speakers compared) (default: the served one)")
    parser.add_argument("--backbone", default="models/whisper-base")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    args = parser.parse_args(argv)
    offsets = args.offsets or [get_task("identification").threshold_offset]  # type: ignore[attr-defined]
    report = evaluate(args.set, args.cache, args.suite, offsets, args.draws, args.clips, args.seed, args.backbone,
                      args.gallery, args.slopes)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
