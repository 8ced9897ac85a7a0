"""VoxCeleb1 reader for the published layout: ``<root>/wav/<speaker>/<youtube_id>/<00001>.wav``.

Two split conventions are supported:

* verification (default): speakers ``id10270``-``id10309`` are the test set (the speakers of
  ``veri_test2.txt``); all other speakers train. For each training speaker with at least two
  videos, the lexicographically last video goes to ``valid`` so the speaker-classification
  loss can be validated on seen speakers but unseen recording sessions.
* identification: an ``iden_split.txt``-style file (``<1|2|3> id10001/yt/00001.wav``) maps
  each clip to train/valid/test.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from training.data._common import audio_duration
from training.data.manifest import ManifestError, ManifestRow, Trial, read_trials

VERIFICATION_TEST_SPEAKERS: frozenset[str] = frozenset(f"id{n}" for n in range(10270, 10310))
_IDEN_SPLIT = {"1": "train", "2": "valid", "3": "test"}


def read_iden_split(path: str | os.PathLike[str]) -> dict[str, str]:
    """``iden_split.txt`` -> {``id/yt/00001.wav``: split}."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[0] not in _IDEN_SPLIT:
                raise ManifestError(f"{path}:{lineno}: expected '<1|2|3> <speaker/video/utt.wav>'")
            out[parts[1]] = _IDEN_SPLIT[parts[0]]
    return out


def read_voxceleb1(
    root: str | os.PathLike[str],
    split_file: str | os.PathLike[str] | None = None,
    test_speakers: frozenset[str] = VERIFICATION_TEST_SPEAKERS,
    valid_videos_per_speaker: int = 1,
) -> list[ManifestRow]:
    """Verification rows for every wav under ``<root>/wav``; ``label`` = ``speaker`` = the identity,
    as the synthetic generator writes them (the speaker-classification target).

    Row ids are ``<speaker>/<video>/<utt>``, the same names the trial lists use.
    """
    wav_root = Path(root) / "wav"
    if not wav_root.is_dir():
        raise ManifestError(f"VoxCeleb1 wav folder not found: {wav_root}")
    files = sorted(wav_root.glob("id*/*/*.wav"))
    if not files:
        raise ManifestError(f"no wavs found under {wav_root}/id*/<video>/*.wav")
    iden = read_iden_split(split_file) if split_file is not None else None

    valid_videos: set[tuple[str, str]] = set()
    if iden is None and valid_videos_per_speaker > 0:
        videos: dict[str, set[str]] = defaultdict(set)
        for f in files:
            videos[f.parent.parent.name].add(f.parent.name)
        for spk, vids in videos.items():
            if spk not in test_speakers and len(vids) > valid_videos_per_speaker:
                valid_videos.update((spk, v) for v in sorted(vids)[-valid_videos_per_speaker:])

    rows: list[ManifestRow] = []
    for f in files:
        spk, video = f.parent.parent.name, f.parent.name
        rel = f"{spk}/{video}/{f.name}"
        if iden is not None:
            if rel not in iden:
                continue  # iden_split covers the identification subset only
            split = iden[rel]
        elif spk in test_speakers:
            split = "test"
        else:
            split = "valid" if (spk, video) in valid_videos else "train"
        rows.append(
            ManifestRow(
                id=f"{spk}/{video}/{f.stem}",
                path=str(f.absolute()),
                duration_s=audio_duration(f),
                split=split,
                task="verification",
                speaker=spk,
                text=None,
                label=spk,
                meta={"corpus": "voxceleb1", "video": video, "utt": f.stem},
            )
        )
    if iden is not None and not rows:
        raise ManifestError(f"no wav under {wav_root} is listed in {split_file}")
    return rows


def read_voxceleb1_trials(
    root: str | os.PathLike[str], trial_file: str | os.PathLike[str] | None = None
) -> list[Trial]:
    """Official trial list with both paths resolved under ``<root>/wav``; every file must exist.

    Without ``trial_file`` it looks for ``veri_test2.txt`` (the cleaned list) in ``<root>`` and
    ``<root>/meta``.
    """
    root = Path(root)
    if trial_file is None:
        for cand in (root / "veri_test2.txt", root / "meta" / "veri_test2.txt"):
            if cand.is_file():
                trial_file = cand
                break
        else:
            raise ManifestError(f"veri_test2.txt not found in {root} or {root / 'meta'}")
    return read_trials(trial_file, base_dir=root / "wav", check_exists=True)
