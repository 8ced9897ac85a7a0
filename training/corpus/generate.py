"""Render the synthetic four-task corpus and write the shared JSONL manifests.

    python -m training.corpus.generate --out data/corpus --seed 0 --scale {tiny,small,full}

Rendering is split into chunks handled by at most --workers processes; every random choice is
seeded from (seed, clip id), so output bytes do not depend on scheduling.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf

from training.corpus import GENERATOR_VERSION
from training.corpus import audio as A
from training.corpus.manifests import ACTED_SOURCES, MANIFESTS
from training.corpus.plan import EMOTIONS, NOISES, SCALES, SPLITS, Clip, Speaker, make_plan, speaker_meta
from training.corpus.synth import Render, render_many

T = TypeVar("T")

TASKS = tuple(MANIFESTS)
TRIAL_TASK = next(task for task, rule in MANIFESTS.items() if rule.trials)
CHUNK = 40
_BANK: list[np.ndarray] = []


def render_spec(clip: Clip, rng: np.random.Generator) -> tuple[Render, dict[str, float]]:
    """Speaker base x emotion multipliers x small per-clip jitter -> synthesiser settings."""
    sp, emo = clip.speaker, EMOTIONS[clip.emotion]
    jp, jr, jw = rng.uniform(0.96, 1.04), rng.uniform(0.95, 1.05), rng.uniform(0.985, 1.015)
    warp = sp.warp * jw
    rate = sp.rate * emo["rate"] * jr / warp  # the warp speeds speech up; compensate in synthesis
    if sp.synth == "espeak":
        rate = emo["rate"] * jr / warp
    r = Render(synth=sp.synth, voice=sp.voice, text=clip.text, variant=sp.variant,
               pitch=sp.pitch * emo["pitch"] * jp, pitch_range=emo["range"], f0_std=sp.f0_std,
               f0_shift=sp.f0_shift * emo["pitch"] * jp, rate=rate, wpm=sp.wpm)
    return r, {"warp": warp, "rate": rate * warp}


def _init(bank: list[np.ndarray]) -> None:
    _BANK[:] = bank


def _process_chunk(args: tuple[str, list[Clip]]) -> list[tuple[str, float, dict[str, object]]]:
    """Render, post-process and write one chunk of clips; returns (id, duration, meta)."""
    out_dir, clips = args
    rngs = {c.id: np.random.default_rng(c.seed) for c in clips}
    specs = [render_spec(c, rngs[c.id]) for c in clips]
    raw = render_many([s[0] for s in specs])
    results = []
    for c, (r, info), (x, sr) in zip(clips, specs, raw, strict=True):
        rng = rngs[c.id]
        emo = EMOTIONS[c.emotion]
        x = A.trim(x, sr, rng)
        y = A.resample_warp(x, sr, info["warp"])
        y = A.soft_clip(A.tilt(y, emo["tilt_db"]), emo["drive"])
        if len(y) < A.SR:  # keep every clip >= 1 s (short commands): pad silence, noise fills it
            short = A.SR - len(y)
            y = np.pad(y, (short // 2, short - short // 2))
        use_reverb = bool(rng.random() < 0.2)
        if use_reverb:
            y = A.reverb(y, rng)
        names, probs = zip(*NOISES, strict=True)
        noise = str(rng.choice(names, p=probs))
        acted = c.source in ACTED_SOURCES
        snr = float(rng.uniform(12, 35)) if acted else float(rng.uniform(5, 30))
        if acted:
            level = c.speaker.level_dbfs + emo["gain_db"] + float(rng.uniform(-1.5, 1.5))
        else:
            level = float(rng.uniform(-32, -16))
        y = A.finish(y, rng, level, noise, snr, _BANK)
        path = Path(out_dir) / c.path
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), A.to_pcm16(y), A.SR, format="FLAC", subtype="PCM_16")
        meta = {"synth": r.synth, "voice": r.voice, "variant": r.variant,
                "pitch": round(float(r.pitch if r.synth != "flite" or r.voice in ("kal", "kal16")
                                     else r.f0_shift), 3),
                "pitch_range": r.pitch_range, "rate": round(info["rate"], 4),
                "warp": round(info["warp"], 4), "snr_db": round(snr, 2) if noise != "none" else None,
                "noise": noise, "reverb": use_reverb, "level_dbfs": round(level, 2),
                "emotion": c.emotion, "source_task": c.source}
        results.append((c.id, round(len(y) / A.SR, 3), meta))
    return results


def _babble_bank(sentences: list[str], seed: int) -> list[np.ndarray]:
    """Seeded bank of synthetic talkers for babble noise (own sentences, never in any split)."""
    rng = np.random.default_rng([seed, 9])
    renders = []
    for i, t in enumerate(sentences):
        if i % 3 == 2:
            renders.append(Render("flite", ("kal", "awb", "slt", "rms")[i % 4], t, rate=1.0))
        else:
            renders.append(Render("espeak", ("en-us", "en", "en-gb-x-rp")[i % 3], t,
                                  variant=("m2", "f3", "m5", "f1")[i % 4],
                                  pitch=float(rng.uniform(20, 80)), wpm=170))
    return [A.resample_warp(x, sr, 1.0) for x, sr in render_many(renders)]


def _entry(c: Clip, task: str, split: str, dur: float, meta: dict[str, object]) -> dict[str, object]:
    label = MANIFESTS[task].label(c)
    return {"id": c.id, "path": c.path, "duration_s": dur, "split": split, "task": task,
            "speaker": c.speaker.id, "text": c.text, "label": label,
            "meta": {**meta, **({"intent": c.intent} if c.intent else {})}}


def build_manifests(clips: list[Clip], done: dict[str, tuple[float, dict[str, object]]],
                    ) -> dict[str, list[dict[str, object]]]:
    """Which clip goes to which task manifest (clips are reused across tasks where sound)."""
    man: dict[str, list[dict[str, object]]] = {t: [] for t in TASKS}
    for c in clips:
        dur, meta = done[c.id]
        for task, rule in MANIFESTS.items():
            if rule.takes(c):
                man[task].append(_entry(c, task, c.split, dur, meta))
    order = {s: i for i, s in enumerate(SPLITS)}
    for t in TASKS:
        man[t].sort(key=lambda e: (order[str(e["split"])], str(e["id"])))
    return man


def make_trials(entries: list[dict[str, object]], n: int, seed: int, tag: str) -> list[str]:
    """Balanced VoxCeleb1-style trials: n/2 same-speaker and n/2 different-speaker pairs."""
    rng = np.random.default_rng([seed, stable_tag(tag)])
    by_spk: dict[str, list[str]] = {}
    for e in entries:
        by_spk.setdefault(str(e["speaker"]), []).append(str(e["path"]))
    spks = sorted(s for s in by_spk if len(by_spk[s]) >= 1)
    multi = [s for s in spks if len(by_spk[s]) >= 2]
    seen: set[tuple[str, str]] = set()
    lines: list[str] = []
    want = n // 2
    for label in (1, 0):  # non-targets match the number of targets actually found (balance)
        got, tries = 0, 0
        while got < want and tries < 50 * n:
            tries += 1
            if label == 1:
                s = multi[int(rng.integers(len(multi)))]
                a, b = rng.choice(len(by_spk[s]), 2, replace=False)
                pa, pb = by_spk[s][int(a)], by_spk[s][int(b)]
            else:
                i, j = rng.choice(len(spks), 2, replace=False)
                pa = by_spk[spks[int(i)]][int(rng.integers(len(by_spk[spks[int(i)]])))]
                pb = by_spk[spks[int(j)]][int(rng.integers(len(by_spk[spks[int(j)]])))]
            key = (min(pa, pb), max(pa, pb))
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"{label} {pa} {pb}")
            got += 1
        want = got
    return lines


def stable_tag(tag: str) -> int:
    return int.from_bytes(hashlib.sha256(tag.encode()).digest()[:4], "little")


def seeded_order(items: Sequence[T], seed: int, tag: str) -> Iterator[T]:
    """``items`` in a permutation drawn from ``(seed, tag)``, lazily: the seeded draws of real clips (suites, language
    corpora, translation prompts) walk it and stop at their count, skipping clips they cannot use."""
    for index in np.random.default_rng([seed, stable_tag(tag)]).permutation(len(items)):
        yield items[int(index)]


def manifest_files(out: Path) -> list[Path]:
    """The files whose hash defines the corpus (manifests + trial lists)."""
    names = [f"{t}.jsonl" for t in TASKS] + [f"{TRIAL_TASK}_trials_test.txt", f"{TRIAL_TASK}_trials_valid.txt"]
    return [out / n for n in names]


def sha256_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def generate(out: Path, seed: int, scale: str, workers: int = 2, log=print) -> dict[str, object]:
    """Render the whole corpus into `out` and return the corpus.json summary."""
    t0 = time.time()
    speakers, clips, info = make_plan(seed, scale)
    out.mkdir(parents=True, exist_ok=True)
    bank = _babble_bank(list(info["babble_sentences"]), seed)  # type: ignore[arg-type]
    # Chunks never mix synthesisers (festival renders a chunk in one process); order is fixed.
    chunks: list[tuple[str, list[Clip]]] = []
    for synth in ("festival", "flite", "espeak"):
        sel = [c for c in clips if c.speaker.synth == synth]
        if synth == "festival":
            sel.sort(key=lambda c: (c.speaker.voice, c.id))
        chunks += [(str(out), sel[i:i + CHUNK]) for i in range(0, len(sel), CHUNK)]
    done: dict[str, tuple[float, dict[str, object]]] = {}
    if workers <= 1:
        _init(bank)
        it = map(_process_chunk, chunks)
        for res in it:
            done.update({cid: (d, m) for cid, d, m in res})
    else:
        with mp.get_context("fork").Pool(workers, initializer=_init, initargs=(bank,)) as pool:
            for k, res in enumerate(pool.imap_unordered(_process_chunk, chunks), 1):
                done.update({cid: (d, m) for cid, d, m in res})
                if k % 10 == 0 or k == len(chunks):
                    log(f"[corpus] {k}/{len(chunks)} chunks, {len(done)}/{len(clips)} clips, "
                        f"{time.time() - t0:.0f}s")
    man = build_manifests(clips, done)
    for t, entries in man.items():
        with open(out / f"{t}.jsonl", "w", encoding="utf-8") as f:
            for e in entries:
                f.write(json.dumps(e, ensure_ascii=False) + "\n")
    cfg = SCALES[scale]
    for split in ("test", "valid"):
        ver = [e for e in man[TRIAL_TASK] if e["split"] == split]
        lines = make_trials(ver, cfg[f"trials_{split}"], seed, split)
        (out / f"{TRIAL_TASK}_trials_{split}.txt").write_text("\n".join(lines) + "\n")
    audio_hash = sha256_files(sorted((out / c.path) for c in clips))
    durs = np.array([done[c.id][0] for c in clips])
    summary: dict[str, object] = {
        "generator_version": GENERATOR_VERSION, "seed": seed, "scale": scale,
        "counts": {t: {s: sum(e["split"] == s for e in man[t]) for s in SPLITS} for t in TASKS},
        "label_counts": {t: {s: _label_counts(man[t], s) for s in SPLITS}
                         for t, rule in MANIFESTS.items() if rule.counted_labels},
        "speakers": {s: sorted(sp.id for sp in speakers if sp.split == s) for s in SPLITS},
        "speakers_per_split": {s: {syn: sum(sp.split == s and sp.synth == syn for sp in speakers)
                                   for syn in ("espeak", "flite", "festival")} for s in SPLITS},
        "speaker_params": [speaker_meta(sp) for sp in speakers],
        "unique_clips": len(clips), "total_hours": round(float(durs.sum()) / 3600, 4),
        "duration_s": {"min": float(durs.min()), "mean": round(float(durs.mean()), 3),
                       "max": float(durs.max())},
        "sentence_pool": info["sentence_pool"],
        "manifest_sha256": sha256_files(manifest_files(out)), "audio_sha256": audio_hash,
    }
    (out / "corpus.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    log(f"[corpus] done: {len(clips)} clips, {summary['total_hours']} h, {time.time() - t0:.1f}s")
    return summary


def _label_counts(entries: list[dict[str, object]], split: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in entries:
        if e["split"] == split:
            counts[str(e["label"])] = counts.get(str(e["label"]), 0) + 1
    return dict(sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data/corpus"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", choices=sorted(SCALES), default="small")
    ap.add_argument("--workers", type=int, default=2, help="synthesis processes (the box has 2 cores)")
    args = ap.parse_args(argv)
    t0 = time.time()
    summary = generate(args.out, args.seed, args.scale, args.workers, log=lambda m: print(m, flush=True))
    print(json.dumps({"seconds": round(time.time() - t0, 1), "hours": summary["total_hours"],
                      "clips": summary["unique_clips"], "manifest_sha256": summary["manifest_sha256"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Speaker", "generate", "main"]
