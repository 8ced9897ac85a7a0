"""Benchmark: the shipped sets on *real human* recordings, beside the tools users know.

Every set here was trained on synthetic speech; users send human speech. No human corpus can be
had offline, but two package registries ship a few recordings with their transcripts:

* the pocketsphinx 5.1.1 source distribution on PyPI (sha256-pinned), its test data: five
  sentences of a LibriVox reading of *Sense and Sensibility* (one reader, read speech from a 64 kbit/s
  MP3), five spoken card names ("eight of spades four of clubs seven of hearts") and "go forward ten
  meters" (CMU recordings);
* Debian's alsa-utils: eight channel announcements ("front left", ... one voice, studio quality).

19 clips: far too few for a precise figure, enough to see whether what was learnt from
synthesisers carries over. ASR: WER and CER per source for ours, Whisper base ``generate`` and
pocketsphinx. Verification: pairs within the LibriVox reading or within the ALSA set are the same
speaker; pairs of the ALSA voice with anyone else are different speakers. Pairs among the
pocketsphinx recordings across sources (LibriVox, cards, goforward) are left out: who recorded them
is not documented, and resemblyzer scores them between its same- and different-speaker ranges
(0.61-0.65 mean), so they may be one person: they are scored apart ("unclear"). EER, and what
``/verify`` would answer at the set's calibrated threshold (false rejects, false accepts).

    python -m benchmarks.human_speech [--device cuda] [--cache ~/.cache/elp-human-speech]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_BACKBONE, REPO_ROOT, decode_clip, markdown_table, workdir_for, write_results
from benchmarks.quality_baselines import asr_systems, timed_map, verification_systems

SDIST_NAME = "pocketsphinx-5.1.1.tar.gz"
SDIST_SHA256 = "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355"
SIMPLE_INDEX = "https://pypi.org/simple/pocketsphinx/"
ALSA_DIR = Path("/usr/share/sounds/alsa")
DATA_PREFIX = "pocketsphinx-5.1.1/test/data/"


@dataclass(frozen=True)
class HumanClip:
    clip_id: str
    source: str  # one recording set: librivox, cards, goforward, alsa
    text: str
    audio: np.ndarray  # mono float32 at 16 kHz


def fetch_sdist(cache: Path) -> Path:
    """The pinned sdist from PyPI's simple index (JSON form), checked against its sha256."""
    target = cache / SDIST_NAME
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == SDIST_SHA256:
        return target
    import httpx

    listing = httpx.get(SIMPLE_INDEX, headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=60)
    listing.raise_for_status()
    url = next(f["url"] for f in listing.json()["files"] if f["filename"] == SDIST_NAME)
    payload = httpx.get(url, timeout=300, follow_redirects=True).content
    if hashlib.sha256(payload).hexdigest() != SDIST_SHA256:
        raise SystemExit(f"{url}: sha256 mismatch, refusing it")
    cache.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload)
    return target


def cards_transcripts(text: str) -> dict[str, str]:
    """``<s> ten of clubs </s> (001)`` lines -> {"001": "ten of clubs"}."""
    out = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\s*<s>\s*(.*?)\s*</s>\s*\((\w+)\)\s*", line)
        if match:
            out[match.group(2)] = match.group(1)
    return out


def alsa_transcript(path: Path) -> str:
    """``Front_Center.wav`` -> "front center" (what the file says)."""
    return path.stem.replace("_", " ").lower()


def pocketsphinx_clips(sdist: Path) -> list[HumanClip]:
    with tarfile.open(sdist) as archive:
        files = {
            m.name.removeprefix(DATA_PREFIX): archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.isfile() and m.name.startswith(DATA_PREFIX) and m.name.split("/")[-2] in ("librivox", "cards", "data")
        }
    clips = []
    for name in sorted(n for n in files if n.startswith("librivox/") and n.endswith(".wav")):
        text = files[name.removesuffix(".wav") + ".txt"].decode().strip()
        clips.append(HumanClip(Path(name).stem, "librivox", text, decode_clip(files[name])))
    for utterance, text in sorted(cards_transcripts(files["cards/cards.transcription"].decode()).items()):
        clips.append(HumanClip(f"cards-{utterance}", "cards", text, decode_clip(files[f"cards/{utterance}.wav"])))
    raw = np.frombuffer(files["goforward.raw"], dtype="<i2").astype(np.float32) / 32768.0  # 16 kHz PCM-16
    clips.append(HumanClip("goforward", "goforward", "go forward ten meters", raw))
    return clips


def alsa_clips(folder: Path = ALSA_DIR) -> list[HumanClip]:
    return [
        HumanClip(f"alsa-{path.stem.lower()}", "alsa", alsa_transcript(path), decode_clip(path.read_bytes()))
        for path in sorted(folder.glob("*.wav"))
        if path.stem != "Noise"
    ]


def speaker_trials(clips: list[HumanClip]) -> list[tuple[int, int, int]]:
    """(clip a, clip b, 1 same / 0 different) under the speaker assumptions in the docstring."""
    same_sources = {"librivox", "alsa"}
    trials = []
    for a, b in itertools.combinations(range(len(clips)), 2):
        source_a, source_b = clips[a].source, clips[b].source
        if source_a == source_b:
            if source_a in same_sources:
                trials.append((a, b, 1))
        elif "alsa" in (source_a, source_b):
            trials.append((a, b, 0))
    return trials


def ambiguous_pairs(clips: list[HumanClip]) -> list[tuple[int, int]]:
    """Pairs across the pocketsphinx recordings' sources: the same person or not, undocumented."""
    return [(a, b) for a, b in itertools.combinations(range(len(clips)), 2)
            if clips[a].source != clips[b].source and "alsa" not in (clips[a].source, clips[b].source)]


def asr_rows(args: argparse.Namespace, workdir: Path, clips: list[HumanClip]) -> tuple[list[dict], dict]:
    from training.data.manifest import normalize_text
    from training.metrics import cer, wer

    references = [normalize_text(c.text) for c in clips]
    rows, hypotheses_by_system = [], {}
    for name, system in asr_systems(args, workdir).items():
        hypotheses, seconds = timed_map(system, [c.audio for c in clips])
        hypotheses_by_system[name] = dict(zip((c.clip_id for c in clips), hypotheses, strict=True))
        row: dict[str, Any] = {"system": name, "clips": len(clips), "wer": round(wer(references, hypotheses), 4),
                               "cer": round(cer(references, hypotheses), 4),
                               "mean_ms": round(1000 * float(np.mean(seconds)), 1)}
        for source in dict.fromkeys(c.source for c in clips):
            picked = [i for i, c in enumerate(clips) if c.source == source]
            row[f"wer_{source}"] = round(wer([references[i] for i in picked], [hypotheses[i] for i in picked]), 4)
        rows.append(row)
        print(f"  {row}", flush=True)
    return rows, hypotheses_by_system


def verification_rows(args: argparse.Namespace, workdir: Path, clips: list[HumanClip]) -> list[dict]:
    from elp import AdapterSet
    from training.metrics import compute_eer

    trials = speaker_trials(clips)
    labels = np.array([label for _, _, label in trials])
    threshold = None
    if (args.verify_adapter / "adapter_config.json").is_file():
        threshold = AdapterSet.load(args.verify_adapter).config.threshold
    rows = []
    for name, system in verification_systems(args, workdir).items():
        embeddings, _ = timed_map(system, [c.audio for c in clips])
        unit = [e / max(np.linalg.norm(e), 1e-12) for e in embeddings]
        scores = np.array([float(unit[a] @ unit[b]) for a, b, _ in trials])
        unclear = np.array([float(unit[a] @ unit[b]) for a, b in ambiguous_pairs(clips)])
        row: dict[str, Any] = {"system": name, "trials": len(trials), "same": int(labels.sum()),
                               "eer": round(compute_eer(scores, labels).eer, 4),
                               "mean_same": round(float(scores[labels == 1].mean()), 3),
                               "mean_different": round(float(scores[labels == 0].mean()), 3),
                               "unclear_pairs": len(unclear), "mean_unclear": round(float(unclear.mean()), 3)}
        if name.startswith("ours") and threshold is not None:
            row["threshold"] = round(threshold, 3)
            row["false_reject"] = round(float((scores[labels == 1] < threshold).mean()), 4)
            row["false_accept"] = round(float((scores[labels == 0] >= threshold).mean()), 4)
            row["unclear_accepted"] = round(float((unclear >= threshold).mean()), 4)
        rows.append(row)
        print(f"  {row}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=str(REPO_ROOT / DEFAULT_BACKBONE))
    parser.add_argument("--adapter", type=Path, default=REPO_ROOT / "adapters_store" / "asr-default")
    parser.add_argument("--verify-adapter", type=Path, default=REPO_ROOT / "adapters_store" / "verify-default")
    parser.add_argument("--baselines", nargs="*", default=["whisper", "pocketsphinx", "resemblyzer"],
                        choices=["whisper", "pocketsphinx", "resemblyzer"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "elp-human-speech")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    args.random_if_missing = False
    clips = pocketsphinx_clips(fetch_sdist(args.cache))
    clips += alsa_clips() if ALSA_DIR.is_dir() else []
    print(f"{len(clips)} human clips: " + ", ".join(f"{s} {sum(c.source == s for c in clips)}"
                                                   for s in dict.fromkeys(c.source for c in clips)), flush=True)
    with workdir_for(args, "human") as workdir:
        asr, hypotheses = asr_rows(args, workdir, clips)
        verification = verification_rows(args, workdir, clips)
    sources = list(dict.fromkeys(c.source for c in clips))
    title = f"real human recordings ({len(clips)} clips: {', '.join(sources)}), device {args.device}"
    asr_columns = ["system", "clips", "wer", "cer", *[f"wer_{s}" for s in sources], "mean_ms"]
    table = (f"{title}\n\nASR\n\n" + markdown_table(asr, asr_columns)
             + "\n\nspeaker verification\n\n" + markdown_table(
                 verification, ["system", "trials", "same", "eer", "mean_same", "mean_different", "threshold",
                                "false_reject", "false_accept", "unclear_pairs", "mean_unclear",
                                "unclear_accepted"]))
    references = {c.clip_id: c.text for c in clips}
    write_results("human_speech", {"title": title, "asr": asr, "verification": verification,
                                   "references": references, "hypotheses": hypotheses}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
