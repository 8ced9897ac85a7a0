"""The real-voice readers (KTuberling, Tux Paint, Fish Fillets) on tiny packages built here: which files
form a voice, that copies count once, and that a whole build still refuses a suite speaker's voice."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpus import realvox, realvox_sources

SR = realvox.SAMPLE_RATE


def tone(hz: float, seconds: float = 0.6, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t + phase)).astype(np.float32)


def write_clip(path: Path, hz: float, phase: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(hz, phase=phase), SR, format="OGG", subtype="VORBIS")


def test_tuxpaint_groups_descriptions_by_language_and_leaves_sound_effects_out(tmp_path):
    stamps = tmp_path / "usr/share/tuxpaint/stamps"
    for name in ("animals/cat_desc_fr.ogg", "animals/cat_desc_pt_BR.ogg", "animals/cat_desc.ogg",
                 "food/apple_desc_fr.ogg", "animals/cat.ogg", "food/apple_desc_fr.png"):
        (stamps / name).parent.mkdir(parents=True, exist_ok=True)
        (stamps / name).write_bytes(name.encode())
    groups = realvox_sources.tuxpaint_groups(tmp_path)
    assert {k: [p.name for p in v] for k, v in groups.items()} == {
        "fr": ["cat_desc_fr.ogg", "apple_desc_fr.ogg"], "pt_BR": ["cat_desc_pt_BR.ogg"], "en": ["cat_desc.ogg"]}


def test_fillets_keeps_the_two_fish_per_language_and_no_other_character(tmp_path):
    sound = tmp_path / "usr/share/games/fillets-ng/sound"
    for name in ("gods/cs/gods-m-hello.ogg", "gods/cs/gods-v-hi.ogg", "gods/cs/gods-hs-parrot.ogg",
                 "lab/nl/lab-m-yes.ogg", "lab/cs/lab-v-no.ogg", "lab/cs/lab-m.ogg", "share/ding.ogg"):
        (sound / name).parent.mkdir(parents=True, exist_ok=True)
        (sound / name).write_bytes(name.encode())
    groups = realvox_sources.fillets_groups(tmp_path)
    assert {k: [p.name for p in v] for k, v in groups.items()} == {
        "cs-small": ["gods-m-hello.ogg"], "cs-big": ["gods-v-hi.ogg", "lab-v-no.ogg"], "nl-small": ["lab-m-yes.ogg"]}


def test_ktuberling_copies_under_several_locales_are_one_voice_and_the_cap_is_seeded(tmp_path):
    sounds = tmp_path / "usr/share/ktuberling/sounds"
    for locale in ("sr", "sr@latin"):
        for word in ("ball", "hat"):
            (sounds / locale).mkdir(parents=True, exist_ok=True)
            (sounds / locale / f"{word}.ogg").write_bytes(f"serbian {word}".encode())
    for word in range(6):
        (sounds / "en").mkdir(exist_ok=True)
        (sounds / "en" / f"w{word}.opus").write_bytes(f"english {word}".encode())
    (sounds / "en" / "readme.txt").write_text("not audio")
    groups = realvox_sources.read_groups("ktuberling", tmp_path, max_clips=4, seed=0, min_clips=2)
    assert sorted(groups) == ["ktuberling-en", "ktuberling-sr"]  # sr@latin held only copies of sr
    assert len(groups["ktuberling-en"]) == 4
    assert groups == realvox_sources.read_groups("ktuberling", tmp_path, max_clips=4, seed=0, min_clips=2)
    other = realvox_sources.read_groups("ktuberling", tmp_path, max_clips=4, seed=1, min_clips=2)
    assert other["ktuberling-en"] != groups["ktuberling-en"]
    assert realvox_sources.read_groups("ktuberling", tmp_path, max_clips=4, seed=0, min_clips=3) == \
        {"ktuberling-en": groups["ktuberling-en"]}


def test_the_reader_is_chosen_from_the_package_name():
    assert realvox_sources.source_of("/x/fillets-ng-data-cs_1.0.1-1.1_all.deb") == "fillets"
    assert realvox_sources.source_of("ktuberling-data_4%3a22.12.3-1_all.deb") == "ktuberling"
    assert realvox_sources.source_of("klettres-data_22.12.3-1_all.deb") == "klettres"
    with pytest.raises(ValueError):
        realvox_sources.source_of("asterisk-core-sounds-en-wav_1.0_all.deb")


def fake_teacher(audio: np.ndarray) -> np.ndarray:
    """Low vs high spectrum energy: the 200 Hz 'voice' and the 600 Hz 'voice' are two speakers."""
    spectrum = np.abs(np.fft.rfft(audio[:SR // 2]))
    low, high = spectrum[: 400 * (SR // 2) // SR].sum(), spectrum[400 * (SR // 2) // SR :].sum()
    vector = np.array([low, high, 0.1 * (low + high)])
    return vector / np.linalg.norm(vector)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (scripts/run_tests.sh installs it)")
def test_a_fillets_package_builds_segments_and_the_suite_speakers_voice_is_refused(tmp_path):
    root = tmp_path / "src"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text("Package: fillets-ng-data-cs\nVersion: 1.0\nArchitecture: all\n"
                                         "Maintainer: t <t@example.org>\nDescription: fixture\n")
    sound = root / "usr/share/games/fillets-ng/sound/lab/cs"
    for k in range(14):  # the small fish speaks low, the big fish high; the parrot is left out
        write_clip(sound / f"lab-m-w{k}.ogg", 200, phase=0.1 * k)
        write_clip(sound / f"lab-v-w{k}.ogg", 600, phase=0.1 * k)
    write_clip(sound / "lab-pap-squawk.ogg", 300)
    (sound / "lab-m-broken.ogg").write_bytes(b"")  # the package ships empty files: left out, reported
    deb = tmp_path / "fillets-ng-data-cs_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "-Znone", str(root), str(deb)], check=True, capture_output=True)
    args = realvox.parser().parse_args([str(deb), "--min-seconds", "3"])
    suite = {"june": np.array([0.0, 1.0, 0.1]) / np.linalg.norm([0.0, 1.0, 0.1])}  # a high voice
    out = tmp_path / "realvox-fillets"
    report = realvox.build([str(deb)], out, fake_teacher, suite, args)
    assert list(report["speakers"]) == ["fillets-cs-small"] and report["speakers"]["fillets-cs-small"] == 14
    assert report["refused"]["fillets-cs-big"][0] == "june"
    assert [Path(p).name for p in report["unreadable"]] == ["lab-m-broken.ogg"]
    rows = [json.loads(line) for line in (out / "verification.jsonl").read_text().splitlines()]
    assert rows and {r["speaker"] for r in rows} == {"fillets-cs-small"}
    assert {r["meta"]["source"] for r in rows} == {"fillets-ng-data-cs"}
    assert all("lab-m-" in clip for r in rows for clip in r["meta"]["clips"])
    assert all(1.5 <= r["duration_s"] <= 5.5 and (out / r["path"]).is_file() for r in rows)
    with pytest.raises(ValueError):  # no suite centroids: nothing is checked, so nothing is built
        realvox.build([str(deb)], tmp_path / "unchecked", fake_teacher, {}, argparse.Namespace())
