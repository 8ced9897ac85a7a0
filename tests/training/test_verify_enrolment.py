"""training.verify_enrolment: enrolments from k cached clips, a genuine and an impostor probe per draw, the rates
at a threshold; voices with too few cached clips sit out."""

from __future__ import annotations

import json

import numpy as np
import torch

from training import verify_enrolment


def write_case(tmp_path, clips_per_voice: dict[str, int]) -> tuple[dict, str]:
    """Voices whose clips all point one way (one axis each, a little noise): genuine cosines near 1, impostors
    near 0. A manifest lists every clip; the cache holds all but one uncached clip per voice."""
    rng = np.random.default_rng(0)
    store, rows = {}, []
    for axis, (speaker, count) in enumerate(clips_per_voice.items()):
        for index in range(count + 1):
            path = tmp_path / f"{speaker}-{index}.wav"
            rows.append({"id": path.stem, "path": str(path), "duration_s": 1.0, "split": "valid",
                         "task": "verification", "speaker": speaker, "text": None, "label": speaker, "meta": {}})
            if index < count:  # the last clip of each voice is not in the cache (a gated clip)
                vector = torch.from_numpy(rng.normal(0, 0.05, 8)).float()
                vector[axis] += 1
                store[str(path)] = {"voice": vector.half(), "z": 0.0}
    manifest = tmp_path / "voices.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return store, str(manifest)


def test_counts_follow_the_voices_that_have_enough_clips(tmp_path):
    store, manifest = write_case(tmp_path, {"a": 2, "b": 4, "c": 6, "d": 1})
    voices = verify_enrolment.voices_of(store, manifest)
    assert sorted(voices) == ["a", "b", "c"] and [len(voices[s]) for s in "abc"] == [2, 4, 6]  # d: one clip
    for clips, eligible in ((1, 3), (3, 2), (5, 1)):
        trials = verify_enrolment.enrolment_trials(voices, clips, draws=7)
        assert trials["genuine"].size == trials["impostor"].size == 7 * eligible


def test_rates_at_a_threshold(tmp_path):
    store, manifest = write_case(tmp_path, {"a": 5, "b": 5, "c": 5})
    trials = verify_enrolment.enrolment_trials(verify_enrolment.voices_of(store, manifest), 3, draws=10)
    assert trials["genuine"].min() > 0.9 and np.abs(trials["impostor"]).max() < 0.3
    assert verify_enrolment.rates(trials, 0.5) == {"genuine": 30, "impostor": 30, "genuine_rejected": 0.0,
                                                   "impostors_accepted": 0.0}
    everything = verify_enrolment.rates(trials, -1.0)  # a threshold under every score accepts every probe
    assert everything["genuine_rejected"] == 0.0 and everything["impostors_accepted"] == 100.0
    assert verify_enrolment.rates(trials, 1.01)["genuine_rejected"] == 100.0


def test_draws_are_seeded(tmp_path):
    store, manifest = write_case(tmp_path, {"a": 5, "b": 5, "c": 5})
    voices = verify_enrolment.voices_of(store, manifest)
    first, again = (verify_enrolment.enrolment_trials(voices, 2, draws=4, seed=3) for _ in range(2))
    assert np.array_equal(first["genuine"], again["genuine"]) and np.array_equal(first["impostor"], again["impostor"])
    other = verify_enrolment.enrolment_trials(voices, 2, draws=4, seed=4)
    assert not np.array_equal(first["genuine"], other["genuine"])


def test_a_duration_table_judges_each_probe_at_the_shorter_side(tmp_path):
    """Each probe's threshold comes from the shorter of the probe and the enrolment's clips in all; the
    draws are the same as with one threshold."""
    store, manifest = write_case(tmp_path, {"a": 5, "b": 5, "c": 5})
    voices, seconds = verify_enrolment.voices_of(store, manifest), verify_enrolment.seconds_of(manifest, store)
    assert {speaker: len(s) for speaker, s in seconds.items()} == {"a": 5, "b": 5, "c": 5}
    seen = []

    def threshold_at(duration: float) -> float:
        seen.append(duration)
        return 1.01 if duration >= 3.0 else -1.0

    for clips in (1, 3):
        seen.clear()
        trials = verify_enrolment.enrolment_trials(voices, clips, 4, 0, seconds, threshold_at)
        plain = verify_enrolment.enrolment_trials(voices, clips, 4, 0)
        assert np.array_equal(trials["genuine"], plain["genuine"]) and np.array_equal(trials["impostor"],
                                                                                       plain["impostor"])
        assert set(seen) == {1.0}  # every 1 s probe is the shorter side of an enrolment of 1 s clips
        assert verify_enrolment.rates(trials)["genuine_rejected"] == 0.0  # judged at -1
    # clips of 4 s: a one-clip enrolment (4 s) and a 3-clip one (12 s) both leave the 4 s probe the shorter side
    long_clips = {speaker: [4.0] * len(s) for speaker, s in seconds.items()}
    trials = verify_enrolment.enrolment_trials(voices, 3, 4, 0, long_clips, threshold_at)
    assert verify_enrolment.rates(trials)["genuine_rejected"] == 100.0  # judged at 1.01
