"""The distillation teacher: resemblyzer's GE2E d-vector encoder, trained on thousands of real speakers.

Imported lazily (``pip install '.[bench]'``: resemblyzer and the setuptools cap its webrtcvad needs),
so the project runs without it; only computing new teacher embeddings needs it. Any callable that maps
a 16 kHz float32 clip to a unit vector can stand in (the tests use a fixed random projection).

``python -m training.teacher CLIPS --out DIR`` writes the teacher's vectors of clips as teacher shards
without an encoder pass: the suite centroids and voice links that the realvox tools read.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
TeacherFn = Callable[[np.ndarray], np.ndarray]


def resemblyzer_teacher() -> TeacherFn:
    """resemblyzer's ``preprocess_wav`` (level normalisation, long-silence trimming) then
    ``embed_utterance``; a clip the voice detector trims to under 0.3 s is embedded untrimmed."""
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)

    def embed(audio: np.ndarray) -> np.ndarray:
        wav = preprocess_wav(audio.astype(np.float32), source_sr=SAMPLE_RATE)
        if wav.size < 0.3 * SAMPLE_RATE:
            wav = audio.astype(np.float32)
        return np.asarray(encoder.embed_utterance(wav), dtype=np.float32)

    return embed


def write_teacher_shards(paths: list[str], teacher: TeacherFn, out: Path, shard_size: int = 200) -> int:
    """The teacher's vector of each clip as it is (key ``<path>#0``) in ``training.distill_cache``'s
    teacher-shard format, written by its ``save_shard``; existing shards are kept (resume). Returns the
    number of clips written."""
    import torch

    from training.dataset import load_audio
    from training.distill_cache import save_shard

    written = 0
    for number, start in enumerate(range(0, len(paths), shard_size)):
        file = out / f"shard-{number:05d}.safetensors"
        if file.exists():
            continue
        chunk = paths[start : start + shard_size]
        vectors = torch.from_numpy(np.stack([teacher(load_audio(p)) for p in chunk]))
        save_shard(out, number, {"embeddings": vectors}, {"keys": json.dumps([f"{p}#0" for p in chunk])})
        written += len(chunk)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the teacher's vectors of clips, as teacher shards (no encoder pass)")
    p.add_argument("audio", nargs="*", help="clips (suite clips too: these vectors guard and link voices)")
    p.add_argument("--manifest", nargs="*", default=[], help="every clip of these manifests as well")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    import torch

    from training.data.manifest import read_manifest

    paths = sorted(set(args.audio) | {row.path for m in args.manifest for row in read_manifest(m)})
    if not paths:
        raise SystemExit("no clips given")
    torch.set_num_threads(1)  # the teacher's small LSTM: extra threads only spin
    written = write_teacher_shards(paths, resemblyzer_teacher(), Path(args.out))
    print(json.dumps({"clips": len(paths), "written": written}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
