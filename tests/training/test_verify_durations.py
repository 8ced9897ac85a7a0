"""Duration-dependent thresholds: crops land on the speech and keep each trial's label; the table takes each
bin's strictest population, accepts at most max_far of every population's impostors in every bin it
fills, never falls with duration, and refuses to guess a shortest bin no trial fills."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from training.data.manifest import read_trials
from training.verify_crops import crop_list, loudest_window
from training.verify_durations import bin_index, choose_table, compare


def test_the_loudest_window_holds_the_burst() -> None:
    wave = np.zeros(32_000, dtype=np.float32)
    wave[20_000:24_000] = 0.5
    window = loudest_window(wave, 8_000)
    assert window.size == 8_000 and float(np.abs(window).sum()) == pytest.approx(0.5 * 4_000)
    assert loudest_window(wave[:4_000], 8_000).size == 4_000  # shorter than the window: whole


def test_crops_keep_labels_and_leave_out_clips_not_longer(tmp_path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    for name, seconds in (("a", 2.0), ("b", 0.4), ("c", 1.5)):
        sf.write(src / f"{name}.flac", (0.1 * rng.standard_normal(int(seconds * 16_000))).astype(np.float32), 16_000)
    trials = src / "trials.txt"
    trials.write_text("1 a.flac c.flac\n0 b.flac a.flac\n0 c.flac b.flac\n")
    counts = crop_list("pop", str(trials), 0.5, tmp_path / "crops")
    assert counts["trials"] == 2 and counts["genuine"] == 1 and counts["left_out_not_longer"] == 1
    cropped = read_trials(tmp_path / "crops" / "pop_d0.5.txt", check_exists=True)
    assert [t.label for t in cropped] == [1, 0]
    assert [sf.info(t.path_a).duration for t in cropped] == [0.5, 0.5]
    assert [t.path_b for t in cropped] == [str(src / "c.flac"), str(src / "b.flac")]


def population(scores, labels, shorter) -> SimpleNamespace:
    return SimpleNamespace(scores=np.asarray(scores, float), labels=np.asarray(labels), shorter=np.asarray(shorter))


def test_the_table_is_the_strictest_population_per_bin_and_never_falls() -> None:
    rng = np.random.default_rng(1)
    pops = {}
    for name, shift in (("phone", 0.15), ("game", 0.0)):
        shorter = np.repeat([0.5, 1.5, 4.0], 400)
        labels = np.tile(np.repeat([0, 1], 200), 3)
        # impostor scores rise with duration on both channels, more on the phone's; the game list has no long clips
        centre = np.where(labels == 1, 0.7, 0.1 + shift + 0.05 * np.log(shorter))
        scores = centre + 0.1 * rng.standard_normal(shorter.size)
        keep = shorter < 3.0 if name == "game" else np.ones_like(shorter, bool)
        pops[name] = population(scores[keep], labels[keep], shorter[keep])
    table, detail = choose_table(pops, [1.0, 3.0], max_far=0.05, min_impostors=100)
    assert [start for start, _ in table] == [0.0, 1.0, 3.0]
    assert detail["from 3 s"].keys() == {"phone"}  # the game list has no impostors there
    for index, (_, threshold) in enumerate(table):
        assert threshold == pytest.approx(max(detail[f"from {table[index][0]:g} s"].values()), abs=1e-4)
        for pop in pops.values():
            inside = (bin_index(pop.shorter, [0.0, 1.0, 3.0]) == index) & (pop.labels == 0)
            if inside.sum() >= 100:
                assert (pop.scores[inside] >= threshold).mean() <= 0.05
    assert [t for _, t in table] == sorted(t for _, t in table)
    rates = compare(pops["phone"], 0.3, table)
    assert rates["all"]["single"]["impostors"] == 600 and set(rates) == {"all", "from 0 s", "from 1 s", "from 3 s"}


def test_an_empty_bin_takes_the_shorter_one_and_an_empty_first_bin_is_refused() -> None:
    pop = population([0.1, 0.2, 0.9] * 100, [0, 0, 1] * 100, [0.5, 0.5, 0.5] * 100)
    table, _ = choose_table({"only": pop}, [1.0, 2.0], max_far=0.05, min_impostors=100)
    assert table[1][1] == table[2][1] == table[0][1]
    late = population([0.1, 0.9] * 100, [0, 1] * 100, [2.5, 2.5] * 100)
    with pytest.raises(SystemExit, match="shortest bin"):
        choose_table({"late": late}, [1.0], max_far=0.05, min_impostors=100)
