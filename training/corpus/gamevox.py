"""Real English speech for ASR training from two Debian game packages, transcribed by a teacher trained on real
people (Whisper base's decoder, ``asr-whisper``).

Why: every clip the CTC set (``asr-default``) learnt from is synthetic, and its errors on real people are about
twice its errors on the corpus' own voices (issue #17). Debian ships two talkie adventure games with their voice
acting: **Flight of the Amazon Queen** (``flight-of-the-amazon-queen``, ~6,700 MP3 lines in ``queen.1c``, about
a dozen actors) and **Drascula** (``drascula``, ~770 raw 8-bit lines in ``en/*.ALS``). Neither package ships the
lines' text in a form tied to the audio, so ``label`` writes the teacher's transcript (a pseudo-label) and drops
lines it reads badly (empty, looping, or more letters a second than speech has).

Groups: FOTAQ lines are named ``DDLLLLSn.SB`` (dialogue, line, speaker letter): a group is a dialogue's first two
digits, so one scene's voices stay together; Drascula lines are named by character prefix (digits alone: the hero).
Whole groups go to ``valid`` (``--valid-fraction``, seeded) so the refit's epoch is chosen on scenes it never saw.
None of these actors is a suite speaker, and nothing here is a suite folder.

A third game, **Beneath a Steel Sky** (``beneath-a-steel-sky``, CD release: ~3,600 RNC-packed 8-bit 11 kHz lines
inside ``sky.dsk``, read by ``training.corpus.sky_speech``), has a cast found in no other source. It is read only
when named (``--packages``), so the default extraction and its valid scenes stay as they were; with
``--valid-fraction 1`` it makes a validation folder of voices that no training line has.

    python -m training.corpus.gamevox extract --out data/gamevox --max-clips 4000
    python -m training.corpus.gamevox label --out data/gamevox --set adapters_store/asr-whisper
    python -m training.corpus.gamevox extract --out data/gamevox-all --max-clips 0   # every line, same valid groups
    python -m training.corpus.gamevox extract --out data/skyvox --packages beneath-a-steel-sky --valid-fraction 1

``label`` keeps the transcripts an earlier run by the same teacher wrote in ``asr.jsonl``, so a larger extraction
only transcribes its new lines.

The audio is 11 kHz (band-limited to 5.5 kHz) and, for FOTAQ, 16 kb/s MP3: real voices through a poor channel.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from training.corpus.sky_speech import section_of, speech_lines
from training.data.manifest import ManifestRow, stable_order, write_manifest
from training.suites.debian import (
    DEFAULT_DEB_CACHE,
    SAMPLE_RATE,
    deb_version,
    extract_deb,
    fetch_deb,
    ffmpeg_decode,
    write_flac,
)

FOTAQ, DRASCULA, SKY = "flight-of-the-amazon-queen", "drascula", "beneath-a-steel-sky"
#: the packages ``extract`` reads unless told otherwise (the valid scenes are drawn over their groups)
DEFAULT_PACKAGES = (FOTAQ, DRASCULA)
RAW_8BIT_11K = ["-f", "u8", "-ar", "11025", "-ac", "1"]
MIN_SECONDS, MAX_SECONDS = 1.0, 15.0
#: more letters a second than read speech has (~15-18): a looping or hallucinated transcript
MAX_LETTERS_PER_SECOND = 22.0


def fotaq_lines(queen_1c: Path) -> Iterator[tuple[str, bytes]]:
    """(entry name, MP3 bytes) of every speech line in a rebuilt FOTAQ resource file (``QTBL`` header, version
    string, compression byte 1 = MP3, then a big-endian table of 12-byte names, bundle, offset and size)."""
    data = queen_1c.read_bytes()
    if data[:4] != b"QTBL" or data[12] != 1:
        raise ValueError(f"{queen_1c}: not a rebuilt FOTAQ file with MP3 speech")
    count = struct.unpack(">H", data[13:15])[0]
    for index in range(count):
        entry = data[15 + 21 * index: 15 + 21 * (index + 1)]
        name = entry[:12].split(b"\0")[0].decode("ascii")
        offset, size = struct.unpack(">II", entry[13:21])
        if name.endswith(".SB"):
            yield name, data[offset: offset + size]


def group_of(source: str, name: str) -> str:
    stem = Path(name).stem.upper()
    if source == FOTAQ:
        return f"fotaq-{stem[:2]}"
    if source == SKY:  # a section of the game (its lines are numbered by section)
        return f"sky-{section_of(int(stem))}"
    prefix = re.match(r"[A-Z_]*", stem).group(0).rstrip("_") or "HACKER"
    return f"drascula-{prefix.lower()}"


def candidate_lines(cache: Path, work: Path, packages: tuple[str, ...] = DEFAULT_PACKAGES,
                    ) -> Iterator[tuple[str, str, bytes, list[str]]]:
    """(source, name, bytes, ffmpeg input options) of every speech line of the packages."""
    if FOTAQ in packages:
        fotaq = extract_deb(fetch_deb(cache, FOTAQ), work)
        for name, payload in fotaq_lines(next(fotaq.rglob("queen.1c"))):
            yield FOTAQ, name, payload, ["-f", "mp3"]
    if DRASCULA in packages:
        drascula = extract_deb(fetch_deb(cache, DRASCULA), work)
        for path in sorted(drascula.rglob("en/*.ALS")):
            if not re.fullmatch(r"S\d+", path.stem.upper()):  # S<n>.ALS are sound effects
                yield DRASCULA, path.name, path.read_bytes(), RAW_8BIT_11K
    if SKY in packages:
        sky = extract_deb(fetch_deb(cache, SKY), work)
        for number, pcm in speech_lines(next(sky.rglob("sky.dnr")), next(sky.rglob("sky.dsk"))):
            yield SKY, f"{number}.raw", pcm, RAW_8BIT_11K


def seeded_pick(names: list[str], count: int, seed: int) -> set[str]:
    ranked = stable_order(names, seed)
    return set(ranked[:count] if count else ranked)


def extract(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    lines = list(candidate_lines(Path(args.deb_cache), out / "packages", tuple(args.packages)))
    picked = seeded_pick([f"{source}/{name}" for source, name, _, _ in lines], args.max_clips, args.seed)
    groups = sorted({group_of(source, name) for source, name, _, _ in lines})
    valid_groups = seeded_pick(groups, max(1, round(args.valid_fraction * len(groups))), args.seed + 1)
    rows, skipped = [], 0
    for source, name, payload, input_args in lines:
        if f"{source}/{name}" not in picked:
            continue
        group = group_of(source, name)
        relative = f"audio/{group}/{Path(name).stem.lower()}.flac"
        if (out / relative).is_file():  # a rerun keeps what an earlier one wrote
            seconds = sf.info(out / relative).duration
        else:
            wave = ffmpeg_decode("pipe:0", input_args, payload)
            seconds = wave.size / SAMPLE_RATE
            if not MIN_SECONDS <= seconds <= MAX_SECONDS or float(np.abs(wave).max(initial=0.0)) < 1e-3:
                skipped += 1
                continue
            write_flac(wave / max(float(np.abs(wave).max()), 1e-3) * 0.7, out / relative)  # peak-normalised
        rows.append(ManifestRow(id=f"{group}-{Path(name).stem.lower()}", path=relative, duration_s=round(seconds, 3),
                                split="valid" if group in valid_groups else "train", task="asr", speaker=group,
                                text=None, meta={"source": source, "real_voice": True}))
    # not a manifest yet: an ASR row needs its text, which ``label`` writes
    (out / "unlabelled.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows), encoding="utf-8")
    report = {"packages": {p: deb_version(fetch_deb(Path(args.deb_cache), p)) for p in args.packages},
              "lines": len(lines), "picked": len(picked), "kept": len(rows), "skipped_length_or_silent": skipped,
              "valid_groups": sorted(valid_groups), "seed": args.seed}
    (out / "gamevox.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def plausible(text: str, seconds: float) -> bool:
    """A transcript worth training on: words, not a loop, not more letters than the time allows."""
    words = text.split()
    if not words or len(text.replace(" ", "")) > MAX_LETTERS_PER_SECOND * seconds:
        return False
    trigrams = [tuple(words[i: i + 3]) for i in range(len(words) - 2)]
    return len(trigrams) < 4 or len(set(trigrams)) > len(trigrams) // 2


def earlier_labels(manifest: Path, rows: list[ManifestRow], teacher: str) -> list[ManifestRow]:
    """The rows an earlier ``label`` run already transcribed with the same teacher, so that a run over a larger
    extraction (``--max-clips 0`` after a subset) only transcribes the new lines. A row is reused only if the
    extraction still lists it with the same audio file and length; lines the teacher dropped are read again."""
    if not manifest.is_file():
        return []
    current = {row.id: row for row in rows}
    reused = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        earlier = json.loads(line)
        row = current.get(earlier["id"])
        same_audio = row is not None and Path(row.path).name == Path(earlier["path"]).name \
            and abs(row.duration_s - earlier["duration_s"]) < 1e-3
        if same_audio and earlier.get("meta", {}).get("pseudo_label") == teacher and earlier.get("text"):
            reused.append(dataclasses.replace(row, text=earlier["text"], meta={**row.meta, "pseudo_label": teacher}))
    return reused


def label(args: argparse.Namespace) -> dict:
    import torch

    from elp import AdapterSet, MultiAdapterModel, load_backbone
    from training.corpus.text import normalise
    from training.dataset import load_audio

    out = Path(args.out)
    lines = (out / "unlabelled.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [ManifestRow(**(json.loads(line) | {"path": str(out.resolve() / json.loads(line)["path"])}))
            for line in lines]
    kept = earlier_labels(out / "asr.jsonl", rows, Path(args.set).name)
    reused, dropped = len(kept), 0
    labelled = {row.id for row in kept}
    ordered = sorted((r for r in rows if r.id not in labelled), key=lambda r: r.duration_s)
    if ordered:  # a rerun with every label reused needs no teacher
        model = MultiAdapterModel(load_backbone(args.backbone))
        model.add_adapter_set("teacher", AdapterSet.load(args.set))
    with torch.inference_mode():
        for start in range(0, len(ordered), args.batch_size):
            batch = ordered[start: start + args.batch_size]
            waves = [torch.from_numpy(load_audio(r.path)) for r in batch]
            for row, answer in zip(batch, model.predict(waves, ["teacher"] * len(batch)), strict=True):
                text = normalise(answer.text or "")
                if plausible(text, row.duration_s):
                    meta = {**row.meta, "pseudo_label": Path(args.set).name}
                    kept.append(dataclasses.replace(row, text=text, meta=meta))
                else:
                    dropped += 1
            if start % (args.batch_size * 25) == 0:
                print(f"{start + len(batch)}/{len(ordered)}", flush=True)
    kept.sort(key=lambda r: r.id)
    write_manifest(kept, out / "asr.jsonl")
    report = json.loads((out / "gamevox.json").read_text()) | {"labelled": len(kept), "dropped_by_teacher": dropped,
                                                                "reused_labels": reused, "teacher": str(args.set)}
    (out / "gamevox.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("extract", help="fetch, decode and split the lines (no text yet)")
    e.add_argument("--out", default="data/gamevox")
    e.add_argument("--deb-cache", default=str(DEFAULT_DEB_CACHE))
    e.add_argument("--max-clips", type=int, default=0, help="a seeded subset of the lines (0: all)")
    e.add_argument("--valid-fraction", type=float, default=0.1, help="share of the groups held out for valid")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--packages", nargs="+", choices=(FOTAQ, DRASCULA, SKY), default=list(DEFAULT_PACKAGES),
                   help="games to read; Beneath a Steel Sky's cast is in no other source (e.g. with "
                        "--valid-fraction 1: a validation folder of voices no training line has)")
    lab = sub.add_parser("label", help="transcribe the extracted lines with a decoder set")
    lab.add_argument("--out", default="data/gamevox")
    lab.add_argument("--set", default="adapters_store/asr-whisper")
    lab.add_argument("--backbone", default="models/whisper-base")
    lab.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)
    print(json.dumps(extract(args) if args.command == "extract" else label(args), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
