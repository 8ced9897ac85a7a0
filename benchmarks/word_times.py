"""Benchmark: how far the word times of ``/asr`` are from the truth.

Truth needs word boundaries, which no recording here has, so the sentences are built: each word of a corpus
sentence is synthesised alone (espeak-ng, en-us), trimmed to where it sounds (35 dB under its peak) and
joined to the next with a seeded 50-250 ms gap. The ASR set answers the joined clip as served (transcript
and ``words``); the words it got right are matched to the truth in order (``difflib``) and their start and
end compared. Isolated-word synthetic speech, so the figures say how the alignment behaves, not how it does
on real conversation.

    python -m benchmarks.word_times [--adapter adapters_store/asr-default] [--sentences 40] [--split valid]
    python -m benchmarks.word_times --adapter adapters_store/asr-whisper --split test --name word_times-asr-whisper
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import REPO_ROOT, markdown_table, write_results
from elp import MultiAdapterModel, load_backbone
from elp.audio import load_audio
from training.data.manifest import filter_split, read_manifest
from training.evaluate import served_set

RATE = 16000


def spoken_word(word: str) -> np.ndarray:
    """One word by espeak-ng, trimmed to the samples within 35 dB of its peak."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as handle:
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", handle.name, word], check=True)
        wave = load_audio(handle.name, RATE)
    loud = np.flatnonzero(np.abs(wave) > np.abs(wave).max() * 10 ** (-35 / 20))
    return wave[loud[0] : loud[-1] + 1]


def built_sentence(words: list[str], rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """The words joined with seeded gaps (0.3 s of silence at either end) and each word's true span."""
    parts, truth, at = [np.zeros(int(0.3 * RATE), np.float32)], [], 0.3
    for word in words:
        wave = spoken_word(word)
        truth.append((word, at, at + wave.size / RATE))
        gap = np.zeros(int(rng.uniform(0.05, 0.25) * RATE), np.float32)
        parts += [wave, gap]
        at += (wave.size + gap.size) / RATE
    parts.append(np.zeros(int(0.3 * RATE), np.float32))
    return np.concatenate(parts), truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default=str(REPO_ROOT / "adapters_store" / "asr-default"))
    parser.add_argument("--backbone", default=str(REPO_ROOT / "models" / "whisper-base"))
    parser.add_argument("--corpus", default=str(REPO_ROOT / "data" / "corpus"))
    parser.add_argument("--split", default="valid")
    parser.add_argument("--sentences", type=int, default=40)
    parser.add_argument("--name", default="word_times", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    model = MultiAdapterModel(load_backbone(args.backbone))
    # as served: a decoder set times its words
    model.add_adapter_set("asr", served_set(args.adapter, encoder=model.backbone))
    model.eval()
    rows = filter_split(read_manifest(Path(args.corpus) / "asr.jsonl"), args.split)[: args.sentences]
    starts, ends, total = [], [], 0
    for row in rows:
        wave, truth = built_sentence((row.text or "").split(), rng)
        answer = model.predict([torch.from_numpy(wave)], ["asr"])[0]
        seconds = wave.size / RATE
        said = [(word, first * seconds, last * seconds) for word, first, last, _ in answer.words or []]
        matcher = difflib.SequenceMatcher(a=[w for w, _, _ in truth], b=[w for w, _, _ in said], autojunk=False)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                starts.append(said[block.b + k][1] - truth[block.a + k][1])
                ends.append(said[block.b + k][2] - truth[block.a + k][2])
        total += len(truth)
    table_rows = [{"edge": edge, "words": len(errors), "median_abs_ms": round(1000 * float(np.median(np.abs(errors)))),
                   "mean_signed_ms": round(1000 * float(np.mean(errors))),
                   "within_50_ms": f"{100 * np.mean(np.abs(errors) <= 0.05):.0f}%",
                   "within_100_ms": f"{100 * np.mean(np.abs(errors) <= 0.1):.0f}%"}
                  for edge, errors in (("start", np.array(starts)), ("end", np.array(ends)))]
    title = (f"Word times of {Path(args.adapter).name}: {len(rows)} {args.split} sentences of separately synthesised "
             f"words, {total} words, {len(starts)} recognised and matched")
    columns = ["edge", "words", "median_abs_ms", "mean_signed_ms", "within_50_ms", "within_100_ms"]
    table = markdown_table(table_rows, columns)
    write_results(args.name, {"title": title, "rows": table_rows}, f"{title}\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
