"""``elp-evaluate A B ...`` on one split: each later set is compared with the first of its task on the same clips
(difference with a paired-bootstrap interval), and the per-clip counts never reach the written JSON."""

from __future__ import annotations

import json

import numpy as np

from training.evaluate import paired_with_first


def _result(name: str, task: str, ids: list[str], **units: list[list[int]]) -> dict:
    return {"adapter": name, "task": task, "split": "valid",
            "_clip_errors": {"ids": ids, **{unit: np.array(rows) for unit, rows in units.items()}}}


def test_later_sets_get_their_difference_from_the_first_and_the_counts_go() -> None:
    ids = [f"c{i}" for i in range(30)]
    results = [
        _result("asr-old", "asr", ids, word=[[2, 10]] * 30, char=[[3, 40]] * 30),
        _result("asr-new", "asr", ids, word=[[1, 10]] * 30, char=[[3, 40]] * 30),
        _result("asr-other-clips", "asr", ids[:10], word=[[0, 10]] * 10, char=[[0, 40]] * 10),
        _result("intent-old", "intent", ids, label=[[1, 1]] * 15 + [[0, 1]] * 15),
        _result("intent-new", "intent", ids, label=[[0, 1]] * 30),
    ]
    paired_with_first(results)
    assert all("_clip_errors" not in r for r in results)
    json.dumps(results)  # what elp-evaluate writes
    new = results[1]["vs_first"]
    assert new["against"] == "asr-old" and new["wer"]["difference"] == -0.1 and new["wer"]["share_better"] == 1.0
    assert new["cer"]["difference"] == 0.0 and new["cer"]["low"] == new["cer"]["high"] == 0.0
    assert "vs_first" not in results[0] and "vs_first" not in results[2]  # the first; other clips: not comparable
    accuracy = results[4]["vs_first"]["accuracy"]  # reported as accuracy: a rise is positive
    assert results[4]["vs_first"]["against"] == "intent-old" and accuracy["difference"] == 0.5
    assert 0 < accuracy["low"] <= 0.5 <= accuracy["high"] and accuracy["share_better"] > 0.99
