"""A real-voice validation set from the realvox voices: half of them (whole voices) become validation
speakers with VoxCeleb trials, the other half a *cohort* (score normalisation, training).

Why: the human suite has only 3 validation speakers, too few to tell verification sets or thresholds
apart by less than ~5 EER points; the 50 realvox voices (``training.corpus.realvox``: KLettres,
KTuberling, Tux Paint, Fish Fillets readers) are real people that are not suite speakers.

Rule (seeded, documented in ``split.json``):

1. *Links*: two voices are linked when they come from one package group (a folder that realvox split in
   two), when their teacher centroids (resemblyzer, cached by ``training.distill_cache``) have cosine
   >= ``link_cosine`` (probably one person), or when given with ``--link``. Linked voices form one
   component; a component lies on one side of the split and its voices never form an impostor trial.
2. *Split*: components are taken per source package in the order of ``sha256(seed|component)`` and each
   goes to the side holding fewer of that source's voices so far (ties: valid), so each source (and
   roughly each language) is halved.
3. *Trials*: per valid voice up to ``per_voice`` segments that share no source clip (a segment
   concatenates 2-4 s of clips, each clip in three segments), 1-20 s; balanced same/different trials
   drawn by the corpus' own ``make_trials``, minus impostor pairs between linked voices, trimmed to
   balance. Genuine pairs are within one voice.

The valid segments are copied under ``<out>/audio`` and the folder is written as a suite
(``training.suites.writer``: ``suite.json``, ``READY``), so the training guard refuses them; the cohort
manifest (``cohort.jsonl``) points at the original segments, which stay trainable.

    python -m training.corpus.realvox_trials data/realvox{,-ktuberling,-tuxpaint,-fillets}/verification.jsonl \
        --teacher data/teacher/realvox-{0,1,kt,tp,fi} --out data/realvox-valid \\
        --pool data/human/verification_trials_valid.txt
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from training.corpus.generate import make_trials
from training.data.manifest import ManifestRow, read_manifest, read_trials, stable_order
from training.suites.registry import human_speaker_roles
from training.suites.writer import write_suite

MIN_SECONDS, MAX_SECONDS = 1.0, 20.0


def voices_of(manifests: Sequence[str]) -> dict[str, list[ManifestRow]]:
    """Rows per voice (absolute paths); refuses human-suite speakers and audio inside a suite folder."""
    roles = human_speaker_roles()
    voices: dict[str, list[ManifestRow]] = {}
    for manifest in manifests:
        for row in read_manifest(manifest):
            if row.speaker in roles:
                raise ValueError(f"{manifest}: {row.speaker!r} is a human-suite speaker ({roles[row.speaker]}); "
                                 "suite speakers never enter the realvox validation or cohort")
            if any((parent / "suite.json").is_file() for parent in Path(row.path).parents):
                raise ValueError(f"{manifest}: {row.path} lies in an evaluation suite folder")
            voices.setdefault(row.speaker, []).append(row)
    return voices


def components(voices: Sequence[str], links: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Connected components of the link graph (union-find), each sorted, in sorted order."""
    parent = {v: v for v in voices}

    def root(v: str) -> str:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for a, b in links:
        if a in parent and b in parent:
            parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for v in voices:
        groups.setdefault(root(v), []).append(v)
    return sorted(sorted(g) for g in groups.values())


def group_links(voices: dict[str, list[ManifestRow]]) -> list[tuple[str, str]]:
    """Voices that realvox cut from one package group (``meta.group``): maybe one person."""
    by_group: dict[str, list[str]] = {}
    for voice, rows in voices.items():
        by_group.setdefault(str(rows[0].meta.get("group", voice)), []).append(voice)
    return [(a, b) for names in by_group.values() for a, b in itertools.pairwise(sorted(names))]


def teacher_links(voices: dict[str, list[ManifestRow]], teacher_dirs: Sequence[str],
                  link_cosine: float) -> list[tuple[str, str, float]]:
    """Voice pairs whose cached teacher centroids have cosine >= ``link_cosine``."""
    from training.verify_calibrate import teacher_vectors

    voice_of = {row.path: voice for voice, rows in voices.items() for row in rows}
    vectors: dict[str, list[np.ndarray]] = {}
    for folder in teacher_dirs:
        for key, vector in teacher_vectors(folder).items():
            voice = voice_of.get(key.rsplit("#", 1)[0])
            if voice is not None:
                vectors.setdefault(voice, []).append(vector.numpy())
    names = sorted(vectors)
    centres = np.stack([np.mean(vectors[n], axis=0) for n in names])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cosines = centres @ centres.T
    return [(names[i], names[j], round(float(cosines[i, j]), 4)) for i in range(len(names))
            for j in range(i + 1, len(names)) if cosines[i, j] >= link_cosine]


def split_components(parts: list[list[str]], source_of: dict[str, str], seed: int) -> tuple[list[str], list[str]]:
    """Step 2 of the module docstring: (valid voices, cohort voices), whole components on each side."""
    by_name = {"+".join(p): p for p in parts}
    count: dict[tuple[str, str], int] = {}
    valid, cohort = [], []
    for name in stable_order(by_name, seed):
        part = by_name[name]
        source = source_of[part[0]]
        side = "valid" if count.get((source, "valid"), 0) <= count.get((source, "cohort"), 0) else "cohort"
        count[(source, side)] = count.get((source, side), 0) + len(part)
        (valid if side == "valid" else cohort).extend(part)
    return sorted(valid), sorted(cohort)


def disjoint_segments(rows: Sequence[ManifestRow], count: int, seed: int) -> list[ManifestRow]:
    """Up to ``count`` rows of one voice, 1-20 s, no two sharing a source clip (``meta.clips``), seeded."""
    taken: list[ManifestRow] = []
    used: set[str] = set()
    by_id = {row.id: row for row in rows}
    for row_id in stable_order(by_id, seed):
        row = by_id[row_id]
        clips = set(row.meta.get("clips", [row.path]))
        if MIN_SECONDS <= row.duration_s <= MAX_SECONDS and not clips & used:
            taken.append(row)
            used |= clips
            if len(taken) == count:
                break
    return sorted(taken, key=lambda r: r.id)


def linked_free_trials(rows: Sequence[ManifestRow], linked: set[frozenset[str]], count: int,
                       seed: int) -> list[str]:
    """Balanced trials (``make_trials``) without impostor pairs between linked voices, trimmed to balance."""
    voice_of = {row.path: row.speaker for row in rows}
    lines = make_trials([{"speaker": r.speaker, "path": r.path} for r in rows], count, seed, "realvox-valid")

    def allowed(line: str) -> bool:
        label, a, b = line.split()
        return label == "1" or frozenset((voice_of[a], voice_of[b])) not in linked

    kept = [line for line in lines if allowed(line)]
    same = [line for line in kept if line.startswith("1 ")]
    different = [line for line in kept if line.startswith("0 ")]
    n = min(len(same), len(different))
    return same[:n] + different[:n]


def build(manifests: Sequence[str], out: Path, args: argparse.Namespace) -> dict:
    """Split, choose segments, copy the valid ones, draw trials and write the suite folder."""
    started = time.time()
    voices = voices_of(manifests)
    found = teacher_links(voices, args.teacher, args.link_cosine) if args.teacher else []
    given = [tuple(pair.split(",", 1)) for pair in args.link]
    edges = group_links(voices) + [(a, b) for a, b, _ in found] + given
    parts = components(sorted(voices), edges)
    source_of = {v: str(rows[0].meta.get("source", "unknown")) for v, rows in voices.items()}
    valid, cohort = split_components(parts, source_of, args.seed)
    out.mkdir(parents=True, exist_ok=True)
    valid_rows = []
    for voice in valid:
        for row in disjoint_segments(voices[voice], args.per_voice, args.seed):
            relative = f"audio/{voice}/{Path(row.path).name}"
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(row.path, out / relative)
            valid_rows.append(replace(row, path=relative, split="valid"))

    def here(path: str) -> str:  # relative to the suite folder, through the data/ symlink
        return os.path.relpath(Path(path).resolve(), out.resolve())

    # the cohort stays where it is (trainable): its manifest points back at the original segments
    cohort_rows = [replace(row, path=here(row.path), split="train")
                   for voice in cohort for row in disjoint_segments(voices[voice], args.cohort_per_voice, args.seed)]
    in_valid = [p for p in parts if set(p) <= set(valid)]
    linked = {frozenset((a, b)) for p in in_valid for a in p for b in p if a != b}
    trials = linked_free_trials(valid_rows, linked, args.trials, args.seed)
    info = {"suite": "realvox-valid", "rule": __doc__.split("Rule (", 1)[1].split("\n\nThe valid", 1)[0],
            "seed": args.seed, "link_cosine": args.link_cosine, "teacher_links": found, "given_links": given,
            "components": [p for p in parts if len(p) > 1], "valid_voices": valid, "cohort_voices": cohort,
            "sources": {v: source_of[v] for v in sorted(voices)}, "per_voice": args.per_voice,
            "cohort_per_voice": args.cohort_per_voice}
    pooled = trials + [f"{t.label} {here(t.path_a)} {here(t.path_b)}" for extra in args.pool
                       for t in read_trials(extra)]
    lists = {"valid": trials} | ({"pooled": pooled} if args.pool else {})
    info["pooled_with"] = args.pool
    return write_suite(out, {"verification": valid_rows, "cohort": cohort_rows}, lists, info, started)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifests", nargs="+", help="realvox verification.jsonl files")
    p.add_argument("--out", default="data/realvox-valid")
    p.add_argument("--teacher", nargs="*", default=[], help="cached teacher shards of the realvox segments")
    p.add_argument("--link-cosine", type=float, default=0.90, help="teacher centroid cosine that links voices")
    p.add_argument("--link", action="append", default=[], metavar="VOICE_A,VOICE_B", help="a link by hand")
    p.add_argument("--per-voice", type=int, default=16, help="segments per valid voice")
    p.add_argument("--cohort-per-voice", type=int, default=8, help="segments per cohort voice")
    p.add_argument("--trials", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", nargs="*", default=[], help="other validation trial lists (the human suite's) to "
                                                        "append in verification_trials_pooled.txt")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    summary = build(args.manifests, Path(args.out), args)
    print({k: summary[k] for k in ("valid_voices", "cohort_voices", "components", "counts")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
