"""Real voices that are not suite speakers: KDE KLettres' recorded letters and syllables (Debian
``klettres-data``, GPL-2+), cut into labelled 2-4 s segments for verification training.

Why: every training voice so far came from a synthesiser, and the set separates real people poorly.
KLettres ships ~1,900 short clips (0.3-1.5 s) read by real people in ~20 languages, about one reader
per language folder. This module extracts the package, checks the "one reader per folder" assumption
with the teacher's embeddings (a folder whose two 2-means halves disagree is split into two speakers),
**refuses any voice whose teacher centroid is near a human-suite speaker's** (cosine above
``max_cosine``: the suite's speakers must never reach training), and concatenates each speaker's clips,
trimmed of silence and separated by short gaps, into segments. Everything is seeded, so the same
package and seed give the same segments and manifest (``verification.jsonl``, the project's format,
split ``train``; ``realvox.json`` records clusters, refusals and cosines).

    python -m training.corpus.realvox /tmp/realvox/klettres-data_*.deb --out data/realvox \
        --suite-manifest data/human/verification.jsonl --suite-teacher data/teacher/human-valid data/teacher/human-test
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.data.manifest import ManifestRow, write_manifest
from training.suites.debian import SAMPLE_RATE, extract_deb, write_flac

KLETTRES = "usr/share/klettres"


def sound_root(deb: str | Path, dest: Path) -> Path:
    """The KLettres sound root of the package, extracted once (``training.suites.debian.extract_deb``)."""
    return extract_deb(Path(deb), dest) / KLETTRES


def folder_clips(sound_root: Path) -> dict[str, list[Path]]:
    """Clips per language folder (``alpha`` letters and ``syllab`` syllables), sorted."""
    groups = {}
    for folder in sorted(p for p in sound_root.iterdir() if p.is_dir()):
        clips = sorted(folder.glob("*/*.ogg"))
        if clips:
            groups[folder.name] = clips
    return groups


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
    """Speaker name (``klettres-<folder>[-k]``) -> (folder, clip indices in it, teacher centroid)."""
    voices = {}
    for folder, clips in groups.items():
        vectors = embed_clips(clips, teacher)
        parts = split_speakers(vectors, split_below, min_clips)
        for k, rows in enumerate(parts):
            name = f"klettres-{folder}" if len(parts) == 1 else f"klettres-{folder}-{k}"
            voices[name] = (folder, rows.tolist(), centroid(vectors[rows]))
    return voices


def write_source(out: Path, groups: dict[str, list[Path]], audio: dict[str, list[np.ndarray]],
                 voices: dict[str, tuple[str, list[int], np.ndarray]], kept: list[str], seed: int,
                 passes: int) -> list[ManifestRow]:
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
                meta={"language": folder, "source": "klettres-data", "human": True, "clips": sources}))
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("deb", nargs="?", help="klettres-data_*.deb (apt-get download klettres-data)")
    p.add_argument("--list", metavar="MANIFEST", help="print the training paths of a built source and stop")
    p.add_argument("--per-speaker", type=int, default=100, help="with --list: segments per speaker")
    p.add_argument("--out", default="data/realvox")
    p.add_argument("--suite-manifest", default="data/human/verification.jsonl")
    p.add_argument("--suite-teacher", nargs="+", default=["data/teacher/human-valid", "data/teacher/human-test"],
                   help="cached teacher embeddings of the human suite's clips (training.distill_cache)")
    p.add_argument("--max-cosine", type=float, default=0.85, help="refuse voices this near a suite speaker")
    p.add_argument("--split-below", type=float, default=0.75, help="split a folder whose halves differ more")
    p.add_argument("--min-clips", type=int, default=12, help="smallest speaker a split may create")
    p.add_argument("--passes", type=int, default=3, help="times each clip is used in a speaker's segments")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(balanced_paths(args.list, args.per_speaker)))
        return 0
    import torch

    from training.dataset import load_audio
    from training.teacher import resemblyzer_teacher

    torch.set_num_threads(1)  # resemblyzer's small LSTM: extra threads spin (0.9 s a clip with 2 here)
    out = Path(args.out).resolve()
    groups = folder_clips(sound_root(args.deb, out))
    audio = {folder: [trim(load_audio(str(c))) for c in clips] for folder, clips in groups.items()}
    voices = label_voices(audio, resemblyzer_teacher(), args.split_below, args.min_clips)
    suite = suite_centroids(args.suite_manifest, args.suite_teacher)
    kept, refused = refuse_suite_voices({n: v[2] for n, v in voices.items()}, suite, args.max_cosine)
    rows = write_source(out, groups, audio, voices, kept, args.seed, args.passes)
    write_manifest(rows, out / "verification.jsonl")
    nearest = {n: max((round(float(voices[n][2] @ c), 4), s) for s, c in suite.items()) for n in voices}
    report = {"seed": args.seed, "max_cosine": args.max_cosine, "split_below": args.split_below,
              "speakers": {n: len(voices[n][1]) for n in kept}, "refused": refused,
              "nearest_suite_speaker": nearest, "segments": len(rows)}
    (out / "realvox.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report | {"nearest_suite_speaker": None}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
