"""Naming a conversation's speakers by enrolled ones (``/diarize`` with ``name_speakers``): the enrolments each
conversation is scored with, and how much of its speech ends up under the right name.

Per conversation (seeded by its index): all of its speakers but one are enrolled (the one left out is a voice
nobody enrolled, whose right answer is no name), plus ``distractors`` other speakers of the suite; each from
``clips`` clips of the suite's source manifests that the conversation does not use, embedded as ``POST
/speakers`` embeds them. Scored on 10 ms frames of the reference turns: a frame is right when it is given its
enrolled speaker's id, or, for the voice left out, no name.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elp.tasks import EnrolledVoice
from elp.tasks.verification import mean_unit_embedding
from training.data.manifest import ManifestRow, read_manifest

FRAME_S = 0.01


@dataclass
class SourceClips:
    """A conversation suite's source clips: rows by speaker, and the clip ids each conversation uses."""

    by_speaker: dict[str, list[ManifestRow]]
    used: dict[str, set[str]]


def source_clips(folder: str | Path) -> SourceClips:
    """Read a built conversation folder's ``suite.json`` sources (manifests next to the folder) and its
    conversations' clip lists (``meta.clips`` of ``diarization.jsonl``)."""
    folder = Path(folder)
    suite = json.loads((folder / "suite.json").read_text(encoding="utf-8"))
    by_speaker: dict[str, list[ManifestRow]] = defaultdict(list)
    for source in suite["sources"]:
        for row in read_manifest(folder.parent / source["manifest"]):
            if source["split"] is None or row.split == source["split"]:
                by_speaker[row.speaker].append(row)
    used = {}
    for line in (folder / "diarization.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            used[entry["id"]] = set(entry.get("meta", {}).get("clips", []))
    return SourceClips(dict(by_speaker), used)


def draw_enrolments(speakers: Sequence[str], conversation_id: str, sources: SourceClips, rng: np.random.Generator,
                    clips: int = 3, distractors: int = 2) -> tuple[str, dict[str, list[ManifestRow]]]:
    """(the speaker left out, {enrolled speaker: its enrolment rows}) for one conversation."""
    left_out = str(rng.choice(sorted(speakers)))
    others = sorted(set(sources.by_speaker) - set(speakers))
    chosen = [s for s in speakers if s != left_out]
    chosen += [str(s) for s in rng.choice(others, size=min(distractors, len(others)), replace=False)]
    enrolments = {}
    for speaker in sorted(chosen):
        unused = [row for row in sources.by_speaker[speaker] if row.id not in sources.used[conversation_id]]
        if len(unused) >= 1:
            picks = rng.choice(len(unused), size=min(clips, len(unused)), replace=False)
            enrolments[speaker] = [unused[int(i)] for i in sorted(picks)]
    return left_out, enrolments


def gallery_of(enrolments: dict[str, list[ManifestRow]],
               embed: Callable[[ManifestRow], torch.Tensor]) -> list[EnrolledVoice]:
    """The enrolled voices as the store keeps them: the mean of the clips' unit embeddings, their seconds."""
    return [EnrolledVoice(speaker, mean_unit_embedding([embed(row) for row in rows]),
                          sum(float(row.duration_s) for row in rows)) for speaker, rows in enrolments.items()]


def naming_frames(reference: Sequence[tuple[float, float, str]], hypothesis: Sequence[tuple[float, float, str | None]],
                  enrolled: set[str]) -> dict[str, int]:
    """10 ms frames of the reference speech: right (its enrolled id, or no name for a voice not enrolled), given
    a wrong name, or an enrolled voice left unnamed."""
    counts = {"frames": 0, "right": 0, "wrong_name": 0, "unnamed": 0}
    for start, end, speaker in reference:
        for t in np.arange(start + FRAME_S / 2, end, FRAME_S):
            named = next((name for a, b, name in hypothesis if a <= t < b), None)
            truth = speaker if speaker in enrolled else None
            counts["frames"] += 1
            if named == truth:
                counts["right"] += 1
            elif named is None:
                counts["unnamed"] += 1
            else:
                counts["wrong_name"] += 1
    return counts


def named_turns(answer: dict) -> list[tuple[float, float, str | None]]:
    """The answer's turns under their speakers' enrolled names (None where a speaker has none)."""
    names = {entry["speaker"]: entry.get("name") for entry in answer["speakers"]}
    return [(turn["start_s"], turn["end_s"], names.get(turn["speaker"])) for turn in answer["turns"]]


def summary(counts: Sequence[dict[str, int]]) -> dict[str, float]:
    total = {key: sum(c[key] for c in counts) for key in ("frames", "right", "wrong_name", "unnamed")}
    frames = max(total["frames"], 1)
    return {"naming_accuracy": round(100 * total["right"] / frames, 2),
            "wrong_name": round(100 * total["wrong_name"] / frames, 2),
            "unnamed": round(100 * total["unnamed"] / frames, 2), "speech_s": round(total["frames"] * FRAME_S, 1)}
