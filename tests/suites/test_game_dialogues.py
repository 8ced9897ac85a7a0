"""FOTAQ dialogue conversations: the resource names' parsing, the dialogue order and grouping, the cutting into
30-90 s runs and the joining (pure parts; the package itself is not needed)."""

from __future__ import annotations

import itertools

import numpy as np

from tests.suites.fixtures import tone
from training.suites import game_dialogues as gd
from training.suites.conversations import GAPS_S


def test_names_parse_into_dialogue_node_role_and_segment():
    line = gd.parse_name("03002BP1.SB")
    assert (line.dialogue, line.node, line.role, line.segment, line.speaker) == ("03", "002B", "P", 1, "fotaq-P-03")
    assert gd.parse_name("120006J2.SB").speaker == "fotaq-J"
    assert gd.parse_name("0300BAPA.SB").segment == 10
    assert gd.parse_name("05SSSSJ1.SB").node == "SSSS" and gd.parse_name("05XXXXP1.SB").node == "XXXX"
    for other in ("JOE12345.SB", "C30E_102.SB", "1000SSSS.SB", "10SSSSSS.SB", "COMIC001.SB", "020006J1.DOG"):
        assert gd.parse_name(other) is None


def test_dialogues_are_grouped_and_ordered():
    names = ["030007P1.SB", "03XXXXP1.SB", "030007J1.SB", "03SSSSJ1.SB", "030001P2.SB", "030001P1.SB",
             "03000AJ1.SB", "040006J1.SB", "JOE00001.SB", "030008J1.SB"]
    grouped = gd.dialogues(names)
    assert list(grouped) == ["03", "04"]
    assert [x.name for x in grouped["03"]] == ["03SSSSJ1.SB", "030001P1.SB", "030001P2.SB", "030007J1.SB",
                                               "030007P1.SB", "030008J1.SB", "03000AJ1.SB", "03XXXXP1.SB"]


def test_chunks_make_30_to_90_s_runs_with_both_speakers():
    rng = np.random.default_rng(0)
    seconds = rng.uniform(1.0, 6.0, 200).tolist()
    speakers = ["fotaq-J" if i % 3 == 0 else "fotaq-P-07" for i in range(200)]
    runs = gd.chunks(seconds, speakers, np.random.default_rng(1))
    assert len(runs) >= 4
    for (a, b), (c, _) in itertools.pairwise(runs):
        assert a < b <= c
    for a, b in runs:
        span = speakers[a:b]
        assert min(span.count("fotaq-J"), span.count("fotaq-P-07")) >= 2
        assert sum(seconds[a:b]) + (b - a + 1) * GAPS_S[0] >= 30.0
        assert sum(seconds[a:b]) + (b - a + 1) * GAPS_S[1] <= 90.0
    assert gd.chunks(seconds[:20], ["fotaq-J"] * 20, np.random.default_rng(1)) == []  # one speaker only


def test_join_places_lines_in_order_with_gaps():
    waves = [tone(0.5 + 0.1 * i, 16000, i) for i in range(5)]
    speakers = ["fotaq-J", "fotaq-P-02", "fotaq-P-02", "fotaq-J", "fotaq-P-02"]
    wave, turns, _ = gd.join(waves, speakers, np.random.default_rng(0))
    assert [s for _, _, s in turns] == speakers
    for (_, b0, _), (a1, _, _) in itertools.pairwise(turns):
        assert GAPS_S[0] - 0.002 <= a1 - b0 <= GAPS_S[1] + 0.002
    assert turns[-1][1] < len(wave) / 16000
