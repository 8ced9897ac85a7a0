"""The int8 calibration's clip choice (training.int8_calibration): seeded, every task, one split only."""

from __future__ import annotations

import json

from training.int8_calibration import mixed_waveforms


def test_mixed_calibration_clips_are_seeded_per_task_and_from_the_split_only(tmp_path):
    import soundfile

    manifests = []
    for task_index, task in enumerate(("asr", "emotion")):
        rows = []
        for clip in range(6):
            split = "train" if clip < 4 else "test"
            name = f"{task}-{clip}.wav"
            # each clip a constant level that names it: task, then clip index; test clips are loud
            level = (0.9 if split == "test" else 0.01 * (10 * task_index + clip + 1))
            soundfile.write(str(tmp_path / name), [level] * 160, 16000)
            rows.append(json.dumps({"id": f"{task}-{clip}", "path": name, "duration_s": 0.01, "split": split,
                                    "task": task, "speaker": "s", "text": "a", "label": "neutral", "meta": {}}))
        manifests.append(tmp_path / f"{task}.jsonl")
        manifests[-1].write_text("\n".join(rows) + "\n")
    first = mixed_waveforms(manifests, "train", 2, 16000, seed=0)
    again = mixed_waveforms(manifests, "train", 2, 16000, seed=0)
    levels = [round(float(wave[0]), 3) for wave in first]
    assert len(first) == 4 and levels == [round(float(wave[0]), 3) for wave in again]
    assert all(level < 0.5 for level in levels)  # never a test clip
    assert sum(level < 0.1 for level in levels) == 2  # two clips of each task
    assert len(mixed_waveforms(manifests, "train", 9, 16000, seed=1)) == 8  # capped at what the split has
