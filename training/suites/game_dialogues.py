"""Real dialogues for speaker diarization: Flight of the Amazon Queen's voiced conversations (Debian
``flight-of-the-amazon-queen``), in the folder format of :mod:`training.suites.conversations`.

What the names say (ScummVM's ``engines/queen/talk.cpp`` builds them, checked against the package's 6,745 lines):
a dialogue line is ``KKNNNNRS.SB``: ``KK`` the dialogue's talk key (one ``.DOG`` file, one conversation
partner; decimal), ``NNNN`` the dialogue node (hex; ``SSSS`` Joe's opening line, ``XXXX`` the lines used once
Joe has talked to the person before), ``R`` the role (``J``: Joe, the hero, always one actor; ``P``: the person
Joe talks to in that dialogue) and ``S`` the segment (hex, 1 first) of a sentence split at its stage directions.
Joe's option ``N`` (``..NJ``) is answered by the person's line of the same node (``..NP``). So the letter is a
role, not a speaker: ``J`` is one speaker across the game (``fotaq-J``), ``P`` is a different character in each
dialogue (``fotaq-P-<KK>``; two dialogues may share a character or an actor, which a per-conversation DER does
not need to know). Other lines (``JOE*``: Joe's remarks, ``C*``: cut scenes, ``*SSSS``: room descriptions) name
no speaker and are left out.

A conversation is a run of one dialogue's lines in order (opening, nodes by number, each node Joe then the
person, segments in order; the already-talked lines last), 30-90 s, with 0.2-1.0 s of silence between lines,
both speakers twice or more. Each line is decoded to 16 kHz (ffmpeg, from 11 kHz MP3), trimmed and leveled as
in the simulated suites. The timing between lines is ours, not the game's. Role: test. Nothing from these
files may be used for training or choosing (note: ``training.corpus.gamevox`` reads the same package for ASR
training; its FOTAQ scenes overlap these).

    python -m training.suites.game_dialogues [--out data/conversations-game-test] [--count 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.corpus.gamevox import FOTAQ, fotaq_lines
from training.suites.conversations import (
    GAPS_S,
    LENGTH_S,
    LEVEL_DBFS,
    MIN_TURNS,
    write_folder,
)
from training.suites.debian import DEFAULT_DEB_CACHE, SAMPLE_RATE, deb_version, extract_deb, fetch_deb, ffmpeg_decode
from training.suites.debian import write_flac as write_audio
from training.suites.utterances import level, speech_turns, trim_silence
from training.suites.writer import READY

SUITE = "conversations-game-test"
_NAME = re.compile(r"(\d\d)([0-9A-F]{4}|SSSS|XXXX)([JP])([0-9A-F])\.SB")


@dataclass(frozen=True)
class Line:
    name: str
    dialogue: str  # the talk key, two digits
    node: str  # four hex digits, SSSS or XXXX
    role: str  # J (Joe) or P (the person of this dialogue)
    segment: int

    @property
    def speaker(self) -> str:
        return "fotaq-J" if self.role == "J" else f"fotaq-P-{self.dialogue}"

    def order(self) -> tuple[int, bool, int]:
        """Opening first, then nodes by number (Joe before the person's answer), segments in order,
        the already-talked-to lines last."""
        node = -1 if self.node == "SSSS" else 1 << 16 if self.node == "XXXX" else int(self.node, 16)
        return node, self.role != "J", self.segment


def parse_name(name: str) -> Line | None:
    """The dialogue line a resource name stands for, or None for lines that name no speaker."""
    match = _NAME.fullmatch(name.upper())
    if match is None:
        return None
    dialogue, node, role, segment = match.groups()
    return Line(name, dialogue, node, role, int(segment, 16))


def dialogues(names: Sequence[str]) -> dict[str, list[Line]]:
    """Dialogue lines per talk key, each in conversation order."""
    grouped: dict[str, list[Line]] = {}
    for name in names:
        line = parse_name(name)
        if line is not None:
            grouped.setdefault(line.dialogue, []).append(line)
    return {key: sorted(lines, key=Line.order) for key, lines in sorted(grouped.items())}


def chunks(seconds: Sequence[float], speakers: Sequence[str], rng: np.random.Generator,
           length_s: tuple[float, float] = LENGTH_S, gaps_s: tuple[float, float] = GAPS_S) -> list[tuple[int, int]]:
    """Consecutive runs ``[start, end)`` of one dialogue's lines that make conversations: each closes once a drawn
    length is reached (never past the longest, with room for the gaps), and is kept when it lasts at least the
    shortest length with every speaker MIN_TURNS times and two speakers or more."""
    runs: list[tuple[int, int]] = []
    start, total = 0, 0.0
    target = rng.uniform(*length_s)
    longest = length_s[1] - gaps_s[1]  # the gap before the first line
    for index, duration in enumerate(seconds):
        step = duration + gaps_s[1]
        if index > start and total + step > longest:  # this line would not fit: close before it
            runs.append((start, index))
            start, total, target = index, 0.0, rng.uniform(*length_s)
        total += step
        if total >= target:
            runs.append((start, index + 1))
            start, total, target = index + 1, 0.0, rng.uniform(*length_s)
    if start < len(seconds):
        runs.append((start, len(seconds)))

    def usable(run: tuple[int, int]) -> bool:
        span = speakers[run[0]:run[1]]
        counts = {s: span.count(s) for s in set(span)}
        least = sum(seconds[run[0]:run[1]]) + (run[1] - run[0] + 1) * gaps_s[0]
        return len(counts) >= 2 and min(counts.values()) >= MIN_TURNS and least >= length_s[0]

    return [run for run in runs if usable(run)]


def join(waves: Sequence[np.ndarray], speakers: Sequence[str], rng: np.random.Generator,
         gaps_s: tuple[float, float] = GAPS_S, rate: int = SAMPLE_RATE):
    """The lines one after another with seeded gaps (one before the first and after the last too), each leveled:
    (wave, turns, clips lowered so as not to clip)."""
    t, placed, turns, limited = rng.uniform(*gaps_s), [], [], 0
    for index, (wave, speaker) in enumerate(zip(waves, speakers, strict=True)):
        if index:
            t += rng.uniform(*gaps_s)
        leveled, low = level(wave, rng.uniform(*LEVEL_DBFS))
        limited += low
        start = int(round(t * rate))
        placed.append((start, leveled))
        turns += speech_turns(start, leveled, speaker, rate)
        t = (start + len(leveled)) / rate
    out = np.zeros(int(round((t + rng.uniform(*gaps_s)) * rate)), dtype=np.float32)
    for start, wave in placed:
        out[start:start + len(wave)] = wave
    return out, turns, limited


def build(out: Path, cache: Path, count: int, seed: int) -> dict:
    started = time.time()
    deb = fetch_deb(cache, FOTAQ)
    queen = next(extract_deb(deb, cache.parent / "extracted").rglob("queen.1c"))
    payloads = dict(fotaq_lines(queen))
    grouped = dialogues(sorted(payloads))

    def decode(line: Line) -> np.ndarray:  # 16 kHz, trimmed
        return trim_silence(ffmpeg_decode("pipe:0", ["-f", "mp3"], payloads[line.name]))

    seconds = {line.name: len(decode(line)) / SAMPLE_RATE for lines in grouped.values() for line in lines}
    candidates: dict[str, list[list[Line]]] = {}
    for key, lines in grouped.items():
        kept = [line for line in lines if seconds[line.name] > 0.1]  # empty or a click
        runs = chunks([seconds[x.name] for x in kept], [x.speaker for x in kept],
                      np.random.default_rng([seed, int(key)]))
        candidates[key] = [kept[a:b] for a, b in runs]
    # round robin over the dialogues in a seeded order, so that as many partners as possible take part
    order = [k for k in np.random.default_rng(seed).permutation(sorted(candidates)).tolist() if candidates[k]]
    picked: list[list[Line]] = []
    for depth in range(max((len(c) for c in candidates.values()), default=0)):
        picked += [candidates[k][depth] for k in order if depth < len(candidates[k])]
    picked = sorted(picked[:count], key=lambda run: (run[0].dialogue, run[0].order()))
    (out / READY).unlink(missing_ok=True)
    records = []
    for index, run in enumerate(picked):
        conversation_id = f"{SUITE}-{index:03d}"
        wave, turns, limited = join([decode(x) for x in run], [x.speaker for x in run],
                                    np.random.default_rng([seed, 7, index]))
        rel = f"audio/{conversation_id}.flac"
        seconds = write_audio(wave, out / rel)
        records.append({"id": conversation_id, "path": rel, "duration_s": round(seconds, 3), "split": "test",
                        "speakers": list(dict.fromkeys(s for _, _, s in turns)), "turns": [list(t) for t in turns],
                        "meta": {"source_suite": f"debian:{FOTAQ}", "gaps_s": list(GAPS_S), "dialogue": run[0].dialogue,
                                 "clips": [x.name for x in run], "limited_clips": limited}})
    info = {"role": "test", "seed": seed,
            "description": "Flight of the Amazon Queen's voiced dialogues (real actors, 11 kHz MP3): Joe and the "
                           "person of each dialogue; see training/suites/game_dialogues.py for the name semantics",
            "sources": [{"package": FOTAQ, "version": deb_version(deb), "lines": len(payloads),
                         "dialogue_lines": sum(map(len, grouped.values())), "dialogues": len(grouped),
                         "candidate_conversations": sum(map(len, candidates.values()))}],
            "rules": {"length_s": list(LENGTH_S), "gaps_s": list(GAPS_S), "level_dbfs": list(LEVEL_DBFS),
                      "min_turns": MIN_TURNS, "speaker_ids": "fotaq-J = Joe (all dialogues); fotaq-P-<KK> = the "
                                                              "person Joe talks to in dialogue KK"},
            "notes": "evaluation only (test): nothing from these files may be used for training or for choosing "
                     "anything. training.corpus.gamevox reads the same package for ASR training: keep the two apart."}
    return write_folder(out, SUITE, records, info, started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data") / SUITE)
    parser.add_argument("--deb-cache", type=Path, default=DEFAULT_DEB_CACHE)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = build(args.out, args.deb_cache, args.count, args.seed)
    print(json.dumps({k: summary[k] for k in ("counts", "sources", "build_seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
