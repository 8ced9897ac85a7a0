"""Simulated conversations for speaker diarization ("who spoke when"), built from clips already on disk.

Each conversation joins single-speaker utterance clips turn by turn: 2-4 speakers that share nothing (no
Kokoro component voice, no realvox voices linked as maybe one person), 30-90 s, the next turn by another
speaker with probability 0.85, silent gaps of 0.2-1.0 s, no overlapping speech. A clip is trimmed of its
leading and trailing silence (25 ms frames every 10 ms, more than 35 dB below its loudest frame, 50 ms
margin kept), so its truth turns are the trimmed span cut at any pause of 0.3 s or more inside it (the same
rule: a source's clip may join several utterances), and set to an RMS of -26..-20 dBFS (lowered further only
where its peak would clip). Seeded: the same seed gives the same folders.

A folder holds ``audio/<id>.flac`` (16 kHz mono 16-bit), ``diarization.jsonl`` (one conversation a line:
id, path, duration_s, split, speakers in order of first turn, turns ``[start_s, end_s, speaker]``, meta),
``reference.rttm``, ``suite.json`` (with its role) and ``READY`` (written last). The folders are evaluation
suites: the training guard refuses their audio, and a test folder chooses nothing.

    python -m training.suites.conversations [--seed 0] [--only conversations-near-valid ...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from elp.diarization import rttm_lines
from training.corpus.generate import stable_tag
from training.data.manifest import ManifestRow, read_manifest
from training.suites.debian import SAMPLE_RATE, write_flac
from training.suites.utterances import TRIM_DB, level, speech_turns, to_rate, trim_silence
from training.suites.writer import READY, sha256_of

LENGTH_S = (30.0, 90.0)
GAPS_S = (0.2, 1.0)
LEVEL_DBFS = (-26.0, -20.0)
P_CHANGE = 0.85
MIN_TURNS = 2
MAX_SPEAKERS = 4


@dataclass(frozen=True)
class Source:
    """Clips of one manifest (one split of it, or all rows when ``split`` is None)."""

    manifest: str  # relative to the data folder
    split: str | None
    name: str  # the source suite, recorded in each conversation's meta
    links_from: str | None = None  # a suite.json whose "components" link voices that may be one person


@dataclass(frozen=True)
class Spec:
    role: str
    count: int
    sources: tuple[Source, ...]
    description: str


REALVOX = Source("realvox-valid/verification.jsonl", "valid", "realvox-valid", "realvox-valid/suite.json")
SPECS: dict[str, Spec] = {
    "conversations-near-valid": Spec("valid", 30, (Source("corpus/verification.jsonl", "valid", "corpus"),),
                                     "corpus verification clips, valid split (12 synthetic speakers)"),
    "conversations-near-test": Spec("test", 40, (Source("corpus/verification.jsonl", "test", "corpus"),),
                                    "corpus verification clips, test split (24 synthetic speakers)"),
    "conversations-far-test": Spec("test", 40, (Source("far/verification.jsonl", None, "far"),),
                                   "far suite verification clips (12 Kokoro identities)"),
    "conversations-far-valid": Spec("valid", 30, (Source("kokoro-asr-valid/asr.jsonl", "valid", "kokoro-asr-valid"),),
                                    "kokoro-asr-valid clips (8 Kokoro mixtures; two share no voice at most)"),
    "conversations-human-test": Spec("test", 40, (Source("human/verification.jsonl", "test", "human"),),
                                     "human suite verification clips, test split (6 real people)"),
    "conversations-human-valid": Spec("valid", 30, (Source("human/verification.jsonl", "valid", "human"), REALVOX),
                                      "human suite valid speakers (3) and realvox-valid's validation voices (25)"),
}
#: folder name -> (role, what its speakers are)
SUITES: dict[str, tuple[str, str]] = {name: (spec.role, spec.description) for name, spec in SPECS.items()}


@dataclass(frozen=True)
class Conversation:
    id: str
    path: Path
    duration_s: float
    split: str
    speakers: tuple[str, ...]
    turns: tuple[tuple[float, float, str], ...]


def read_conversations(folder: str | os.PathLike[str]) -> list[Conversation]:
    """The conversations of a built folder's ``diarization.jsonl``, paths absolute."""
    folder = Path(os.path.abspath(folder))
    conversations = []
    with (folder / "diarization.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                obj = json.loads(line)
                conversations.append(Conversation(
                    id=obj["id"], path=folder / obj["path"], duration_s=float(obj["duration_s"]), split=obj["split"],
                    speakers=tuple(obj["speakers"]),
                    turns=tuple((float(a), float(b), str(s)) for a, b, s in obj["turns"])))
    return conversations


# ---- pure parts -------------------------------------------------------------------------------------------------

def kokoro_components(speaker: str) -> frozenset[str]:
    """Component voices of a Kokoro identity (``kokoro-<v>``, ``kokoro-mix-<a>-<b>``, ``kokoro-valid-<n>-<a>-<b>``);
    empty for any other speaker."""
    parts = speaker.split("-")
    if parts[0] != "kokoro" or len(parts) < 2:
        return frozenset()
    if parts[1] == "mix":
        return frozenset(parts[2:])
    if parts[1] == "valid":
        return frozenset(parts[3:])
    return frozenset(parts[1:])


def conflict(a: str, b: str, links: frozenset[frozenset[str]] = frozenset()) -> bool:
    """Whether two speakers may not share a conversation: the same, a common Kokoro voice, or linked."""
    return a == b or bool(kokoro_components(a) & kokoro_components(b)) or frozenset((a, b)) in links


def max_compatible(pool: Sequence[str], links: frozenset[frozenset[str]] = frozenset(),
                   limit: int = MAX_SPEAKERS) -> int:
    """The most speakers (up to ``limit``) of ``pool`` that may share a conversation."""
    for k in range(min(limit, len(pool)), 1, -1):
        for combo in itertools.combinations(pool, k):
            if not any(conflict(a, b, links) for a, b in itertools.combinations(combo, 2)):
                return k
    return min(len(pool), 1)


def speaker_counts(n: int, most: int, rng: np.random.Generator) -> list[int]:
    """``n`` speaker counts spread evenly over 2..``most`` (at most 4), in seeded order."""
    allowed = list(range(2, max(2, min(most, MAX_SPEAKERS)) + 1))
    plan = [allowed[i % len(allowed)] for i in range(n)]
    return [plan[int(i)] for i in rng.permutation(n)]


def pick_speakers(pool: Sequence[str], k: int, rng: np.random.Generator,
                  links: frozenset[frozenset[str]] = frozenset(), tries: int = 500) -> list[str]:
    """``k`` speakers of ``pool``, no two in conflict, drawn at random (greedy on a seeded shuffle, retried)."""
    for _ in range(tries):
        chosen: list[str] = []
        for index in rng.permutation(len(pool)):
            if not any(conflict(pool[int(index)], c, links) for c in chosen):
                chosen.append(pool[int(index)])
                if len(chosen) == k:
                    return chosen
    raise ValueError(f"no {k} compatible speakers in a pool of {len(pool)}")


@dataclass(frozen=True)
class Composition:
    wave: np.ndarray
    turns: list[tuple[float, float, str]]
    picks: list[tuple[str, int]]  # (speaker, clip index) per turn
    limited: int  # clips lowered below their drawn level so as not to clip


def compose(clips: Mapping[str, Sequence[np.ndarray]], seed: int | Sequence[int], *, rate: int = SAMPLE_RATE,
            length_s: tuple[float, float] = LENGTH_S, gaps_s: tuple[float, float] = GAPS_S,
            levels_dbfs: tuple[float, float] = LEVEL_DBFS, p_change: float = P_CHANGE) -> Composition:
    """One conversation of the (already trimmed) ``clips`` of each speaker, seeded; see the module docstring.

    Turns are added until a drawn length is reached and every speaker has spoken MIN_TURNS times; a clip is
    drawn among the speaker's unused ones (all of them once used up) that leave room for the turns still owed.
    Clips are reused only where unavoidable: the drawn length stays under what the clips make once each (when
    that is over the shortest length), and the turn goes to another speaker when one has run out of clips.
    Raises ValueError when the clips cannot make a conversation inside ``length_s``.
    """
    rng = np.random.default_rng(seed)
    speakers = list(clips)
    if len(speakers) < 2 or any(len(c) == 0 for c in clips.values()):
        raise ValueError("a conversation needs two speakers with clips")
    longest = length_s[1] - gaps_s[1]  # room for the closing silence
    seconds = {s: [len(c) / rate for c in clips[s]] for s in speakers}
    # no longer than the clips make without repeating one (where that is 30 s or more)
    unique = sum(map(sum, seconds.values())) + sum(map(len, seconds.values())) * sum(gaps_s) / 2
    target = rng.uniform(length_s[0], max(length_s[0], min(longest, unique)))
    shortest = {s: min(d) for s, d in seconds.items()}
    unused = {s: list(range(len(clips[s]))) for s in speakers}
    turns_of = dict.fromkeys(speakers, 0)
    t = rng.uniform(*gaps_s)
    placed: list[tuple[int, np.ndarray, str]] = []
    turns: list[tuple[float, float, str]] = []
    picks: list[tuple[str, int]] = []
    limited = 0
    prev: str | None = None
    while True:
        owed = [s for s in speakers if turns_of[s] < MIN_TURNS]
        if t >= target and not owed:
            break
        if t >= target:  # past the length: only the speakers still owed a turn
            others = [s for s in owed if s != prev and unused[s]] or [s for s in owed if s != prev]
            choice = others[int(rng.integers(len(others)))] if others else owed[0]
        elif prev is None or rng.random() < p_change or not unused[prev]:
            others = [s for s in speakers if s != prev and unused[s]] or [s for s in speakers if s != prev]
            choice = others[int(rng.integers(len(others)))]
        else:
            choice = prev
        gap = rng.uniform(*gaps_s) if turns else 0.0
        fits: list[int] = []
        for speaker in [choice, *(s for s in owed if s != choice)]:  # one still owed a turn when none fits
            reserve = sum(max(0, MIN_TURNS - turns_of[s] - (s == speaker)) * (shortest[s] + gaps_s[1])
                          for s in speakers)
            room = longest - t - gap - reserve
            fits = [i for i in unused[speaker] if seconds[speaker][i] <= room]  # a used clip when no unused fits
            fits = fits or [i for i in range(len(clips[speaker])) if seconds[speaker][i] <= room]
            if fits:
                break
        if not fits:
            if not owed and t >= length_s[0]:
                break
            raise ValueError("the clips do not fit the conversation's length")
        index = fits[int(rng.integers(len(fits)))]
        unused[speaker] = [i for i in unused[speaker] if i != index]
        wave, low = level(clips[speaker][index], rng.uniform(*levels_dbfs))
        limited += low
        start = int(round((t + gap) * rate))
        placed.append((start, wave, speaker))
        turns += speech_turns(start, wave, speaker, rate)
        picks.append((speaker, index))
        turns_of[speaker] += 1
        t = (start + len(wave)) / rate
        prev = speaker
    total = int(round((t + rng.uniform(*gaps_s)) * rate))
    out = np.zeros(total, dtype=np.float32)
    for start, wave, _ in placed:
        out[start:start + len(wave)] = wave
    return Composition(out, turns, picks, limited)


def speakers_in_order(turns: Iterable[tuple[float, float, str]]) -> list[str]:
    return list(dict.fromkeys(s for _, _, s in turns))


def write_folder(out: Path, name: str, records: list[dict[str, Any]], info: dict[str, Any],
                 started: float) -> dict[str, Any]:
    """diarization.jsonl, reference.rttm, suite.json, then READY (the audio is already under ``out``)."""
    manifest, rttm = out / "diarization.jsonl", out / "reference.rttm"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    rttm.write_text("".join(line + "\n" for r in records for line in rttm_lines(r["id"], r["turns"])))
    per_count: dict[str, int] = {}
    for r in records:
        per_count[str(len(r["speakers"]))] = per_count.get(str(len(r["speakers"])), 0) + 1
    seconds = sum(r["duration_s"] for r in records)
    counts = {"conversations": len(records), "hours": round(seconds / 3600, 3), "seconds": round(seconds, 1),
              "turns": sum(len(r["turns"]) for r in records),
              "speech_seconds": round(sum(b - a for r in records for a, b, _ in r["turns"]), 1),
              "speakers": len({s for r in records for s in r["speakers"]}), "per_speaker_count": per_count,
              "limited_clips": sum(r["meta"].get("limited_clips", 0) for r in records)}
    summary = {"suite": name, **info, "counts": counts, "manifest_sha256": sha256_of([manifest, rttm]),
               "build_seconds": round(time.time() - started, 1)}
    (out / "suite.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / READY).write_text(summary["manifest_sha256"] + "\n")
    return summary


# ---- building from the manifests ----------------------------------------------------------------------------------

def load_clip(path: str) -> np.ndarray:
    wave, rate = sf.read(path, dtype="float32", always_2d=True)
    return trim_silence(to_rate(wave.mean(axis=1), rate))


def source_links(data: Path, source: Source) -> frozenset[frozenset[str]]:
    if source.links_from is None:
        return frozenset()
    info = json.loads((data / source.links_from).read_text())
    return frozenset(frozenset(pair) for part in info.get("components", [])
                     for pair in itertools.combinations(part, 2))


def pool_of(data: Path, spec: Spec) -> tuple[dict[str, list[ManifestRow]], dict[str, str], frozenset, list[dict]]:
    """Rows per speaker (sorted by id), each speaker's source, voice links and what each source gave."""
    rows_of: dict[str, list[ManifestRow]] = {}
    source_of: dict[str, str] = {}
    links: set[frozenset[str]] = set()
    described = []
    for source in spec.sources:
        path = data / source.manifest
        suite_folder = (path.parent / "suite.json").is_file()
        if not path.is_file() or (suite_folder and not (path.parent / READY).is_file()):
            hint = " (python -m training.corpus.realvox_trials)" if source is REALVOX else ""
            raise SystemExit(f"{path} is missing or its suite unfinished (no READY): build it first{hint}")
        rows = [r for r in read_manifest(path) if source.split is None or r.split == source.split]
        for row in sorted(rows, key=lambda r: r.id):
            if source_of.setdefault(row.speaker, source.name) != source.name:
                raise ValueError(f"speaker {row.speaker!r} is in two sources")
            rows_of.setdefault(row.speaker, []).append(row)
        links |= source_links(data, source)
        described.append({"manifest": source.manifest, "split": source.split, "clips": len(rows),
                          "speakers": sorted({r.speaker for r in rows}), "sha256": sha256_of([path])})
    return rows_of, source_of, frozenset(links), described


def build_suite(name: str, data: Path, out: Path, seed: int, count: int | None = None,
                length_s: tuple[float, float] = LENGTH_S, spec: Spec | None = None) -> dict[str, Any]:
    """Build one folder of SPECS (``spec`` overrides it, for tests) under ``out``; returns its suite.json."""
    started = time.time()
    spec = spec or SPECS[name]
    count = spec.count if count is None else count
    rows_of, source_of, links, described = pool_of(data, spec)
    pool = sorted(rows_of)
    most = max_compatible(pool, links)
    if most < 2:
        raise ValueError(f"{name}: fewer than two compatible speakers")
    tag = stable_tag(name)
    plan = speaker_counts(count, most, np.random.default_rng([seed, tag]))
    (out / READY).unlink(missing_ok=True)
    cache: dict[str, np.ndarray] = {}
    split = "valid" if spec.role == "valid" else "test"
    records = []
    for index, k in enumerate(plan):
        conversation_id = f"{name}-{index:03d}"
        for attempt in range(20):
            speakers = pick_speakers(pool, k, np.random.default_rng([seed, tag, index, attempt]), links)
            for row in (r for s in speakers for r in rows_of[s] if r.path not in cache):
                cache[row.path] = load_clip(row.path)
            clips = {s: [cache[r.path] for r in rows_of[s]] for s in speakers}
            try:
                made = compose(clips, [seed, tag, index, attempt], length_s=length_s)
                break
            except ValueError:
                continue
        else:
            raise ValueError(f"{conversation_id}: no conversation fits after 20 attempts")
        rel = f"audio/{conversation_id}.flac"
        seconds = write_flac(made.wave, out / rel)
        used = speakers_in_order(made.turns)
        records.append({"id": conversation_id, "path": rel, "duration_s": round(seconds, 3), "split": split,
                        "speakers": used, "turns": [list(t) for t in made.turns],
                        "meta": {"source_suite": "+".join(sorted({source_of[s] for s in used})),
                                 "gaps_s": list(GAPS_S), "clips": [rows_of[s][i].id for s, i in made.picks],
                                 "limited_clips": made.limited, "attempt": attempt}})
    info = {"role": spec.role, "seed": seed, "description": spec.description, "sources": described,
            "rules": {"length_s": list(length_s), "gaps_s": list(GAPS_S), "level_dbfs": list(LEVEL_DBFS),
                      "p_change": P_CHANGE, "min_turns": MIN_TURNS, "trim_db": TRIM_DB, "max_speakers": most,
                      "voice_links": sorted(sorted(p) for p in links)},
            "notes": "evaluation only: never trained on" + ("; a test suite, chooses nothing"
                                                            if spec.role == "test" else "")}
    return write_folder(out, name, records, info, started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=sorted(SPECS), help="build these folders alone")
    parser.add_argument("--data", type=Path, default=Path("data"), help="where the sources are and folders go")
    args = parser.parse_args(argv)
    for name in args.only or list(SPECS):
        summary = build_suite(name, args.data, args.data / name, args.seed)
        print(name, json.dumps({k: summary[k] for k in ("counts", "build_seconds")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
