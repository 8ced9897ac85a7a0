"""Real voices that are not suite speakers, from Debian packages (readers in
``training.corpus.realvox_sources``: KDE KLettres letters, KTuberling words, Tux Paint stamp descriptions,
Fish Fillets dialogue), cut into labelled 2-4 s segments for verification training.

Why: every training voice so far came from a synthesiser, and the set separates real people poorly.
The packages ship short clips read by real people, about one reader per language folder (a *group*).
This module extracts the packages, checks the "one reader per group" assumption with the teacher's
embeddings (a group whose two 2-means halves disagree is split into two speakers), **refuses any voice
whose teacher centroid is near a human-suite speaker's** (cosine above ``max_cosine``: the suite's
speakers must never reach training), and concatenates each speaker's clips, trimmed of silence and
separated by short gaps, into segments. Everything is seeded, so the same packages and seed give the
same segments and manifest (``verification.jsonl``, the project's format, split ``train``;
``realvox.json`` records clusters, refusals and cosines).

    python -m training.corpus.realvox /tmp/realvox/klettres-data_*.deb --out data/realvox \
        --suite-manifest data/human/verification.jsonl --suite-teacher data/teacher/human-valid data/teacher/human-test
    python -m training.corpus.realvox fillets-ng-data-cs_*.deb fillets-ng-data-nl_*.deb --out data/realvox-fillets \
        --max-clips-per-voice 200
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.corpus.realvox_sources import read_groups, source_of
from training.data.manifest import ManifestRow, write_manifest
from training.suites.debian import SAMPLE_RATE, extract_deb, write_flac


def package_groups(debs: list[str], out: Path, source: str, max_clips: int, seed: int,
                   min_clips: int) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Each package extracted once under ``out`` and read by its source's reader: clips per group
    (``<source>-<group>``) and the package each group came from."""
    groups: dict[str, list[Path]] = {}
    package_of: dict[str, str] = {}
    for deb in debs:
        reader = source_of(deb) if source == "auto" else source
        found = read_groups(reader, extract_deb(Path(deb), out), max_clips, seed, min_clips)
        clash = sorted(set(found) & set(groups))
        if clash:
            raise ValueError(f"groups {clash} come from two packages")
        groups.update(found)
        package_of.update({name: Path(deb).name.split("_", 1)[0] for name in found})
    return groups, package_of


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-9)


def two_means(vectors: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Deterministic spherical 2-means (started at the two mutually farthest points); 0/1 per row."""
    vectors = unit(vectors)
    similarity = vectors @ vectors.T
    a, b = np.unravel_index(int(np.argmin(similarity)), similarity.shape)
    centres = vectors[[a, b]]
    assign = np.zeros(len(vectors), dtype=int)
    for _ in range(iterations):
        assign = np.argmax(vectors @ centres.T, axis=1)
        if assign.min() == assign.max():
            break
        centres = unit(np.stack([vectors[assign == k].mean(axis=0) for k in (0, 1)]))
    return assign


def split_speakers(vectors: np.ndarray, split_below: float, min_clips: int, depth: int = 2) -> list[np.ndarray]:
    """Row indices per speaker: a group splits in two (recursively, ``depth`` times) when the centroids
    of its 2-means halves have cosine below ``split_below`` and each half holds ``min_clips`` clips."""
    indices = np.arange(len(vectors))
    if depth == 0 or len(vectors) < 2 * min_clips:
        return [indices]
    assign = two_means(vectors)
    halves = [indices[assign == k] for k in (0, 1)]
    if min(h.size for h in halves) < min_clips:
        return [indices]
    centres = unit(np.stack([unit(vectors[h]).mean(axis=0) for h in halves]))
    if float(centres[0] @ centres[1]) >= split_below:
        return [indices]
    return [h[sub] for h in halves for sub in split_speakers(vectors[h], split_below, min_clips, depth - 1)]


def centroid(vectors: np.ndarray) -> np.ndarray:
    return unit(unit(vectors).mean(axis=0))


def refuse_suite_voices(voices: dict[str, np.ndarray], suite: dict[str, np.ndarray],
                        max_cosine: float) -> tuple[list[str], dict[str, tuple[str, float]]]:
    """Voices (name -> teacher centroid) to keep, and the refused ones with the suite speaker they are
    nearest to: a voice whose centroid is at cosine > ``max_cosine`` from any suite speaker's centroid
    may be that person (or too like them to train on), so it never reaches training."""
    if not suite:
        raise ValueError("no suite speaker centroids: refusing to build a training source unchecked")
    names = sorted(suite)
    suite_matrix = np.stack([suite[n] for n in names])
    kept, refused = [], {}
    for voice in sorted(voices):
        cosines = suite_matrix @ voices[voice]
        nearest = int(np.argmax(cosines))
        if float(cosines[nearest]) > max_cosine:
            refused[voice] = (names[nearest], round(float(cosines[nearest]), 4))
        else:
            kept.append(voice)
    return kept, refused


def trim(audio: np.ndarray, floor_db: float = -35.0) -> np.ndarray:
    """The clip without leading/trailing frames quieter than ``floor_db`` below its loudest 10 ms frame."""
    hop = SAMPLE_RATE // 100
    frames = audio[: audio.size // hop * hop].reshape(-1, hop)
    if not frames.size:
        return audio
    level = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(level > level.max() + floor_db)
    return audio[loud[0] * hop : (loud[-1] + 1) * hop]


def build_segments(clips: list[np.ndarray], seed: str, passes: int = 3, min_s: float = 2.0, max_s: float = 4.0,
                   gap_s: tuple[float, float] = (0.12, 0.3)) -> list[tuple[np.ndarray, list[int]]]:
    """One speaker's segments: ``passes`` seeded shuffles of the clips, each cut into runs whose length
    (clips plus gaps of low noise) reaches a target drawn from [min_s, max_s]; a short tail joins the
    previous segment. Returns (audio, clip indices) pairs; the same clips and seed give the same list."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "little"))
    segments: list[tuple[np.ndarray, list[int]]] = []
    for _ in range(passes):
        order = rng.permutation(len(clips)).tolist()
        run: list[int] = []
        target, length = rng.uniform(min_s, max_s), 0.0
        for index in order:
            run.append(index)
            length += clips[index].size / SAMPLE_RATE + gap_s[1]
            if length >= target:
                segments.append((join(clips, run, rng, gap_s), run))
                run, target, length = [], rng.uniform(min_s, max_s), 0.0
        if run and segments and length < min_s:
            merged = segments[-1][1] + run
            segments[-1] = (join(clips, merged, rng, gap_s), merged)
        elif run:
            segments.append((join(clips, run, rng, gap_s), run))
    return segments


def join(clips: list[np.ndarray], run: list[int], rng: np.random.Generator, gap_s: tuple[float, float]) -> np.ndarray:
    parts = []
    for k, index in enumerate(run):
        if k:
            parts.append(rng.normal(0, 1e-4, int(rng.uniform(*gap_s) * SAMPLE_RATE)).astype(np.float32))
        parts.append(clips[index])
    return np.concatenate(parts).astype(np.float32)


def suite_centroids(manifest: str, teacher_dirs: list[str]) -> dict[str, np.ndarray]:
    """Each human-suite speaker's centroid of the cached teacher embeddings of its clips."""
    from training.data.manifest import read_manifest
    from training.verify_calibrate import teacher_vectors

    speaker_of = {row.path: row.speaker for row in read_manifest(manifest)}
    by_speaker: dict[str, list[np.ndarray]] = {}
    for folder in teacher_dirs:
        for key, vector in teacher_vectors(folder).items():
            path = key.rsplit("#", 1)[0]
            if key.endswith("#0") and path in speaker_of:
                by_speaker.setdefault(speaker_of[path], []).append(vector.numpy())
    return {name: centroid(np.stack(vectors)) for name, vectors in by_speaker.items()}


def embed_clips(clips: list[np.ndarray], teacher: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return np.stack([teacher(clip) for clip in clips])


def label_voices(groups: dict[str, list[np.ndarray]], teacher: Callable[[np.ndarray], np.ndarray],
                 split_below: float, min_clips: int) -> dict[str, tuple[str, list[int], np.ndarray]]:
    """Speaker name (``<group>[-k]``) -> (group, clip indices in it, teacher centroid)."""
    voices = {}
    for folder, clips in groups.items():
        vectors = embed_clips(clips, teacher)
        parts = split_speakers(vectors, split_below, min_clips)
        for k, rows in enumerate(parts):
            name = folder if len(parts) == 1 else f"{folder}-{k}"
            voices[name] = (folder, rows.tolist(), centroid(vectors[rows]))
    return voices


def write_source(out: Path, groups: dict[str, list[Path]], audio: dict[str, list[np.ndarray]],
                 voices: dict[str, tuple[str, list[int], np.ndarray]], kept: list[str], seed: int,
                 passes: int, package_of: dict[str, str]) -> list[ManifestRow]:
    """Segments as 16 kHz FLAC under ``out/segments/<speaker>/`` and their manifest rows."""
    rows = []
    for name in kept:
        folder, indices, _ = voices[name]
        clips = [audio[folder][i] for i in indices]
        for number, (segment, run) in enumerate(build_segments(clips, f"{seed}|{name}", passes)):
            relative = f"segments/{name}/{name}-{number:03d}.flac"
            seconds = write_flac(segment, out / relative)
            sources = [str(groups[folder][indices[i]].relative_to(out)) for i in run]
            rows.append(ManifestRow(
                id=f"{name}-{number:03d}", path=relative, duration_s=round(seconds, 3), split="train",
                task="verification", speaker=name, label=name,
                meta={"group": folder, "source": package_of[folder], "human": True, "clips": sources}))
    return rows


def balanced_paths(manifest: str | Path, per_speaker: int) -> list[str]:
    """The first ``per_speaker`` segments of each speaker, in manifest order: one reader (Malayalam,
    864 segments) would otherwise outweigh the other 19 together."""
    taken: dict[str, int] = {}
    paths = []
    for line in Path(manifest).read_text().splitlines():
        row = json.loads(line)
        if taken.get(row["speaker"], 0) < per_speaker:
            taken[row["speaker"]] = taken.get(row["speaker"], 0) + 1
            paths.append(str(Path(manifest).parent / row["path"]))
    return paths


def readable_clips(clips: list[Path], load: Callable[[str], np.ndarray],
                   min_s: float = 0.15) -> tuple[list[Path], list[np.ndarray]]:
    """The clips that decode to at least ``min_s`` of sound once trimmed (Fish Fillets ships empty files)."""
    from elp.errors import AudioError

    kept, audio = [], []
    for clip in clips:
        try:
            wave = trim(load(str(clip)))
        except AudioError:
            continue
        if wave.size >= min_s * SAMPLE_RATE:
            kept.append(clip)
            audio.append(wave)
    return kept, audio


def build(debs: list[str], out: Path, teacher: Callable[[np.ndarray], np.ndarray],
          suite: dict[str, np.ndarray], args: argparse.Namespace) -> dict:
    """Read, label, guard and write one realvox source under ``out``; returns its report."""
    from training.dataset import load_audio

    if not suite:
        raise ValueError("no suite speaker centroids: refusing to build a training source unchecked")
    groups, package_of = package_groups(debs, out, args.source, args.max_clips_per_voice, args.seed,
                                        args.min_clips)
    audio, unreadable = {}, []
    for group, clips in groups.items():
        groups[group], audio[group] = readable_clips(clips, load_audio)
        unreadable += sorted(set(map(str, clips)) - set(map(str, groups[group])))
    seconds = {group: round(sum(c.size for c in clips) / SAMPLE_RATE, 1) for group, clips in audio.items()}
    short = sorted(group for group, total in seconds.items() if total < args.min_seconds)
    for group in short:
        groups.pop(group), audio.pop(group)
    voices = label_voices(audio, teacher, args.split_below, args.min_clips)
    kept, refused = refuse_suite_voices({n: v[2] for n, v in voices.items()}, suite, args.max_cosine)
    rows = write_source(out, groups, audio, voices, kept, args.seed, args.passes, package_of)
    write_manifest(rows, out / "verification.jsonl")
    nearest = {n: max((round(float(voices[n][2] @ c), 4), s) for s, c in suite.items()) for n in voices}
    report = {"seed": args.seed, "max_cosine": args.max_cosine, "split_below": args.split_below,
              "packages": sorted(set(package_of.values())), "speakers": {n: len(voices[n][1]) for n in kept},
              "seconds": seconds, "too_short": short, "unreadable": unreadable, "refused": refused,
              "nearest_suite_speaker": nearest, "segments": len(rows)}
    (out / "realvox.json").write_text(json.dumps(report, indent=1))
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("debs", nargs="*", help="package files (apt-get download klettres-data ktuberling-data "
                                           "tuxpaint-stamps-default fillets-ng-data-cs ...)")
    p.add_argument("--source", default="auto", help="reader (training.corpus.realvox_sources.READERS); "
                                                    "auto: from each package's name")
    p.add_argument("--list", metavar="MANIFEST", help="print the training paths of a built source and stop")
    p.add_argument("--per-speaker", type=int, default=100, help="with --list: segments per speaker")
    p.add_argument("--out", default="data/realvox")
    p.add_argument("--suite-manifest", default="data/human/verification.jsonl")
    p.add_argument("--suite-teacher", nargs="+", default=["data/teacher/human-valid", "data/teacher/human-test"],
                   help="cached teacher embeddings of the human suite's clips (training.distill_cache)")
    p.add_argument("--max-cosine", type=float, default=0.85, help="refuse voices this near a suite speaker")
    p.add_argument("--split-below", type=float, default=0.75, help="split a group whose halves differ more")
    p.add_argument("--min-clips", type=int, default=12, help="smallest group, and smallest speaker a split "
                                                             "may create")
    p.add_argument("--min-seconds", type=float, default=20.0, help="drop groups with less trimmed speech")
    p.add_argument("--max-clips-per-voice", type=int, default=0, help="seeded sample of each group (0: all)")
    p.add_argument("--passes", type=int, default=3, help="times each clip is used in a speaker's segments")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list:
        print("\n".join(balanced_paths(args.list, args.per_speaker)))
        return 0
    if not args.debs:
        raise SystemExit("give the package files (or --list MANIFEST)")
    import torch

    from training.teacher import resemblyzer_teacher

    torch.set_num_threads(1)  # resemblyzer's small LSTM: extra threads spin (0.9 s a clip with 2 here)
    suite = suite_centroids(args.suite_manifest, args.suite_teacher)
    report = build(args.debs, Path(args.out).resolve(), resemblyzer_teacher(), suite, args)
    print(json.dumps(report | {"nearest_suite_speaker": None}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
