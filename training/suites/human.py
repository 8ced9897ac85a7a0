"""The ``human`` suite: real people's recordings, in data/corpus' schema, under ``data/human``.

ASR (split test): Allison's US-English prompts from the 16 kHz G.722 package with the package's
transcripts, plus LibriVox, ALSA and the CMU card / go-forward clips; ``asr_phone.jsonl`` holds the
same prompts from the 8 kHz WAV package (telephone band), reported as its own row.
Verification: every person of :data:`registry.HUMAN_SOURCES`, clips of at least 1 s, ``split`` =
the speaker's role; trials only within a role. All asterisk voices, Allison's English included,
are read from the 8 kHz packages for verification so the channel is no cue to identity.

    python -m training.suites.human [--out data/human] [--deb-cache ~/.cache/elp-suites/debs]
"""

from __future__ import annotations

import argparse
import gzip
import re
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from elp.tasks import get_task
from training.corpus.generate import seeded_order
from training.corpus.text import normalise
from training.data.manifest import ManifestRow
from training.suites import registry
from training.suites.debian import (
    DEFAULT_DEB_CACHE,
    SAMPLE_RATE,
    deb_version,
    decode_file,
    extract_deb,
    fetch_deb,
    write_flac,
)
from training.suites.sources import HumanClip, alsa_clips, fetch_sdist, pocketsphinx_clips
from training.suites.writer import balanced_trials, write_suite

MIN_TRIAL_SECONDS = 1.0
# Longer clips leave the trials after drawing (the server refuses clips over Whisper's 30 s window,
# and a verification clip is a short utterance); dropping them afterwards keeps every other trial.
MAX_TRIAL_SECONDS = 20.0
TRANSCRIPTS = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
_ACRONYM = re.compile(r"\b[A-Z]{2,}\b")  # read letter by letter ("IAX"): no faithful spelling


def prompt_text(raw: str) -> str | None:
    """A prompt's spoken words in the CTC vocabulary, or None when they cannot be written faithfully.

    Bracketed and parenthesised notes ("[ascending tones]", "(simple tone sound plays)") are not
    speech and are dropped; symbols that are spoken as words ("*", "#") and acronyms are refused.
    """
    spoken = re.sub(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>", " ", raw)
    if re.search(r"[*#$+=/@\"<>]", spoken) or _ACRONYM.search(spoken.replace("A.M.", "").replace("P.M.", "")):
        return None
    text = normalise(spoken)
    return text or None


def allison_transcripts(root: Path) -> dict[str, str]:
    """prompt key ("digits/1", "vm-intro") -> normalised text, from ``core-sounds-en.txt.gz``."""
    out: dict[str, str] = {}
    for line in gzip.decompress((root / TRANSCRIPTS).read_bytes()).decode("utf-8").splitlines():
        if line.startswith(";") or ":" not in line:
            continue
        key, raw = line.split(":", 1)
        text = prompt_text(raw)
        if text is not None:
            out[key.strip()] = text
    return out


def _row(clip_id: str, rel: str, seconds: float, speaker: str, split: str, task: str, text: str | None,
         meta: dict) -> ManifestRow:
    return ManifestRow(id=clip_id, path=rel, duration_s=round(seconds, 3), split=split, task=task, speaker=speaker,
                       text=text, label=speaker if get_task(task).evaluation == "trials" else None, meta=meta)


def _save(out: Path, rel: str, source: Path | np.ndarray) -> float:
    """Write the clip (decoding ``source`` when it is a file) unless a previous run did: a clip
    depends only on its source file. Returns its seconds."""
    path = out / rel
    if path.is_file():
        return sf.info(path).frames / SAMPLE_RATE
    return write_flac(decode_file(source) if isinstance(source, Path) else source, path)


def allison_asr(out: Path, wide_root: Path, phone_root: Path, texts: dict[str, str]) -> tuple[list, list]:
    """(wide-band rows, telephone-band rows) for every transcribed prompt both packages hold."""
    folder = registry.ASTERISK_SOUNDS + "/en_US_f_Allison"
    wide, phone = [], []
    for key in sorted(texts):
        g722, wav = wide_root / folder / f"{key}.g722", phone_root / folder / f"{key}.wav"
        if not (g722.is_file() and wav.is_file()):
            continue
        name = key.replace("/", "-")
        meta = {"language": "en", "prompt": key, "human": True}
        rel = f"audio/allison-en-g722/{name}.flac"
        seconds = _save(out, rel, g722)
        wide.append(_row(f"allison-en-g722-{name}", rel, seconds, "allison", "test", "asr", texts[key],
                         {**meta, "package": registry.ALLISON_WIDEBAND_PACKAGE, "band": "wide"}))
        rel = f"audio/allison-en-wav/{name}.flac"
        seconds = _save(out, rel, wav)
        phone.append(_row(f"allison-en-wav-{name}", rel, seconds, "allison", "test", "asr", texts[key],
                          {**meta, "package": "asterisk-core-sounds-en-wav", "band": "telephone"}))
    return wide, phone


def small_set_rows(out: Path, clips: list[HumanClip]) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """(ASR rows, verification rows) of the pocketsphinx and ALSA clips; only LibriVox and ALSA
    have a known speaker, and only clips of at least a second go into trials."""
    asr, verification = [], []
    for clip in clips:
        rel = f"audio/{clip.source}/{clip.clip_id}.flac"
        seconds = _save(out, rel, clip.audio)
        speaker = clip.source if clip.source not in registry.ASR_ONLY_SOURCES else f"unknown-{clip.source}"
        meta = {"language": "en", "source": clip.source, "human": True}
        asr.append(_row(clip.clip_id, rel, seconds, speaker, "test", "asr", normalise(clip.text), meta))
        if clip.source not in registry.ASR_ONLY_SOURCES and seconds >= MIN_TRIAL_SECONDS:
            role = registry.human_speaker_roles()[clip.source]
            verification.append(_row(clip.clip_id, rel, seconds, clip.source, role, "verification", None, meta))
    return asr, verification


def prompt_rows(out: Path, source: registry.HumanSource, root: Path, per_source: int, seed: int) -> list[ManifestRow]:
    """Up to ``per_source`` seeded clips of one asterisk voice, each at least a second long."""
    files = sorted((root / source.folder).rglob(f"*.{source.extension}"))
    rows: list[ManifestRow] = []
    for path in seeded_order(files, seed, f"{source.speaker}-{source.language}"):
        if len(rows) >= per_source:
            break
        name = path.relative_to(root / source.folder).with_suffix("").as_posix().replace("/", "-")
        rel = f"audio/{source.speaker}-{source.language}/{name}.flac"
        seconds = _save(out, rel, path)
        if seconds < MIN_TRIAL_SECONDS:
            continue
        rows.append(_row(f"{source.speaker}-{source.language}-{name}", rel, seconds, source.speaker, source.role,
                         "verification", None, {"language": source.language, "package": source.package,
                                                "human": True}))
    return rows


def without_long_clips(lines: list[str], rows: list[ManifestRow]) -> list[str]:
    """Trials without clips over :data:`MAX_TRIAL_SECONDS`, re-balanced by dropping the last
    trials of the larger class."""
    long = {r.path for r in rows if r.duration_s > MAX_TRIAL_SECONDS}
    kept = [line for line in lines if not long & set(line.split()[1:])]
    same = [line for line in kept if line.startswith("1 ")]
    different = [line for line in kept if line.startswith("0 ")]
    n = min(len(same), len(different))
    return same[:n] + different[:n]


def build(out: Path, deb_cache: Path, sdist: Path, seed: int = 0, per_source: int = 60,
          test_trials: int = 3000, valid_trials: int = 2000, log=print) -> dict:
    """Fetch and extract the packages, decode, write the whole suite; returns suite.json's content.
    ``sdist`` is the pocketsphinx source distribution (:func:`sources.fetch_sdist` gets the pinned one)."""
    started = time.time()
    roots, versions = {}, {}
    for package in registry.debian_packages():
        deb = fetch_deb(deb_cache, package)
        roots[package], versions[package] = extract_deb(deb, deb_cache / "x"), deb_version(deb)
    log(f"{len(roots)} packages extracted under {deb_cache / 'x'}")
    texts = allison_transcripts(roots[registry.ALLISON_TRANSCRIPT_PACKAGE])
    wide, phone = allison_asr(out, roots[registry.ALLISON_WIDEBAND_PACKAGE], roots["asterisk-core-sounds-en-wav"],
                              texts)
    log(f"Allison prompts: {len(wide)} transcribed of {len(texts)} usable transcripts")
    small = pocketsphinx_clips(sdist)
    small += alsa_clips(roots["alsa-utils"] / "usr/share/sounds/alsa")
    small_asr, small_verification = small_set_rows(out, small)
    verification = list(small_verification)
    for source in registry.HUMAN_SOURCES:
        if source.package.startswith("asterisk"):
            verification += prompt_rows(out, source, roots[source.package], per_source, seed)
            log(f"{source.speaker}-{source.language}: {sum(r.speaker == source.speaker for r in verification)} clips")
    trials = {role: without_long_clips(balanced_trials([r for r in verification if r.split == role], count, seed,
                                                       f"human-{role}"), verification)
              for role, count in (("valid", valid_trials), ("test", test_trials))}
    verification = [r for r in verification if r.duration_s <= MAX_TRIAL_SECONDS]
    info = {
        "suite": "human", "seed": seed, "min_trial_seconds": MIN_TRIAL_SECONDS, "per_source_clips": per_source,
        "max_trial_seconds": MAX_TRIAL_SECONDS,
        "speakers": {s: {"role": registry.human_speaker_roles()[s],
                         "sources": [f"{x.package or 'pocketsphinx-5.1.1 sdist'}:{x.folder} ({x.language})"
                                     for x in registry.HUMAN_SOURCES if x.speaker == s]}
                     for s in registry.human_speaker_roles()},
        "asr_only_sources": list(registry.ASR_ONLY_SOURCES),
        "packages": versions, "pocketsphinx_sdist": "pocketsphinx-5.1.1.tar.gz (sha256-pinned)",
        "notes": "asr: Allison en from the 16 kHz G.722 package (transcripts normalised with "
                 "training.corpus.text.normalise; non-speech notes, symbols and acronyms dropped), LibriVox, ALSA, "
                 "CMU cards/goforward; asr_phone: the same prompts from the 8 kHz WAV package; verification "
                 "reads every asterisk voice from its 8 kHz package",
    }
    return write_suite(out, {"asr": wide + small_asr, "asr_phone": phone, "verification": verification}, trials,
                       info, started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/human"))
    parser.add_argument("--deb-cache", type=Path, default=DEFAULT_DEB_CACHE)
    parser.add_argument("--sdist-cache", type=Path, default=Path.home() / ".cache" / "elp-human-speech")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-source", type=int, default=60, help="verification clips per asterisk voice")
    args = parser.parse_args(argv)
    summary = build(args.out, args.deb_cache, fetch_sdist(args.sdist_cache), args.seed, args.per_source)
    print({k: summary[k] for k in ("counts", "manifest_sha256", "build_seconds")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
