"""Benchmark: what the speech gate costs a clip: the level rule, the voice gate's decision as served (its
first second, the whole clip only when that holds too little voice), the voice detector over the whole clip
in one batched pass (``elp.voice_activity``) and silero-vad's own model fed 32 ms at a time (its helpers' loop).

Same clips for every system (corpus clips of 1-10 s, or seeded audio without the corpus, and one recording of
``--long-s`` seconds made of them: a long ``/asr`` upload), rounds interleaved; reported: median ms a clip,
min-max, and ms per second of audio.

    python -m benchmarks.voice_activity [--clips 20] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import functools
import sys

import numpy as np
import torch

from benchmarks.common import corpus_clips, decode_clip, markdown_table, write_results
from benchmarks.set_latency import interleaved
from benchmarks.stats import load_note
from elp.speech_activity import SpeechGate, VoiceGate
from elp.voice_activity import SAMPLE_RATE, load_package_model, package_probabilities


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a decoding thread's share)")
    parser.add_argument("--long-s", type=float, default=300.0, help="seconds of the long recording (0: none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    waves = [decode_clip(clip.data) for clip in corpus_clips(args.clips)]
    level, voice = SpeechGate(), VoiceGate()
    systems = {"level rule": lambda w: level.has_speech(w, SAMPLE_RATE),
               "voice gate as served (first second, then whole)": lambda w: voice.has_speech(w, SAMPLE_RATE),
               "voice detector, whole clip batched": lambda w: voice.active_seconds(w, SAMPLE_RATE),
               "silero-vad's chunk loop, whole clip": functools.partial(package_probabilities, load_package_model())}
    tables, results = [], {}
    sets = {"clips": waves}
    if args.long_s > 0:
        joined = np.concatenate(waves)
        sets["long recording"] = [np.resize(joined, int(args.long_s * SAMPLE_RATE)).astype(np.float32)]
    for name, clips in sets.items():
        result = interleaved(systems, clips, args.rounds, args.threads)
        audio_s = sum(len(w) for w in clips) / SAMPLE_RATE / len(clips)
        for row in result["rows"]:
            row["ms_per_audio_s"] = round(row["ms_per_clip"] / audio_s, 2)
        results[name] = result
        tables.append(f"{name}: {result['title']}\n{load_note(result['load_start'], result['load_end'])}\n\n"
                      + markdown_table(result["rows"], ["system", "ms_per_clip", "ms_min", "ms_max", "ms_per_audio_s"]))
    write_results("voice-activity", {"command": sys.argv, "results": results}, "\n\n".join(tables))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
