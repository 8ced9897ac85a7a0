"""Benchmark: a decoder set's drafted (speculative) decoding against greedy token steps, same clips.

Both run the same set as served (``MultiAdapterModel.predict``: encoder pass, head, post-processing);
"greedy" is the set with drafted decoding switched off (``draft_max_rows`` 0). Reported per system:
ms a clip (median of interleaved rounds, min-max), decoder passes a clip (drafted; greedy takes one a
token) and how many transcripts equal greedy's (drafted decoding keeps greedy's tokens up to float
rounding). ``--rows`` also times calls of several of the set's rows at once (``draft_max_rows``).

    python -m benchmarks.speculative --set adapters_store/asr-whisper --manifest data/corpus/asr.jsonl \
        --split valid [--clips 60] [--rounds 3] [--rows 1 2 4] [--max-tokens 4 8 12] \
        [--min-confidence 0 0.5] [--dtype auto] [--bound]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import DEFAULT_BACKBONE, markdown_table, write_results
from benchmarks.stats import load_note, machine_load, round_robin


def load_clips(manifests: list[str], split: str | None, count: int, seed: int) -> list[np.ndarray]:
    from training.data.manifest import read_manifest
    from training.dataset import load_audio

    rows = [row for manifest in manifests for row in read_manifest(manifest)
            if (split is None or row.split == split) and row.text]
    picked = np.random.default_rng(seed).permutation(len(rows))[:count]
    return [load_audio(rows[i].path) for i in sorted(picked)]


def systems_for(args: argparse.Namespace):
    from elp import MultiAdapterModel, load_backbone
    from elp.adapter_set import AdapterSet

    quantization = None if args.dtype == "float32" else args.dtype
    model = MultiAdapterModel(load_backbone(str(args.backbone), quantization=quantization))
    base = AdapterSet.load(args.set)
    if base.config.decoder is None or not base.config.decoder.draft_hidden:
        raise SystemExit(f"{args.set} has no draft (training.draft_ctc attach)")
    systems = {}
    for max_tokens in args.max_tokens:
        for confidence in args.min_confidence:
            drafted = copy.deepcopy(base)
            drafted.head.config.draft_max_tokens = max_tokens
            drafted.head.config.draft_min_confidence = confidence
            drafted.head.config.draft_max_rows = max(args.rows)
            systems[f"drafted-{max_tokens}-c{confidence:g}"] = drafted
    greedy = copy.deepcopy(base)
    greedy.head.config.draft_max_rows = 0
    systems["greedy"] = greedy
    for name, adapter_set in systems.items():
        model.add_adapter_set(name, adapter_set)
    return model, list(systems)


def run(model, name: str, clips: list[np.ndarray], rows: int) -> tuple[float, list[str], list[int]]:
    """ms a clip, the transcripts and the passes a clip, ``rows`` clips a call."""
    texts, passes = [], []
    head = model.adapter_sets[name].head
    start = time.perf_counter()
    for first in range(0, len(clips), rows):
        group = [torch.from_numpy(clip) for clip in clips[first:first + rows]]
        texts += [p.text or "" for p in model.predict(group, [name] * len(group))]
        passes += list(head.last_passes)
    return 1000 * (time.perf_counter() - start) / len(clips), texts, passes


class PerfectDraft:
    """Proposes greedy decoding's own tokens: what drafted decoding would cost with a draft never wrong."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens

    def propose(self, emitted: list[int], most: int) -> list[int]:
        return self.tokens[len(emitted): len(emitted) + max(most, 0)]


@torch.inference_mode()
def decoder_bound(model, name: str, clips: list[np.ndarray], rounds: int) -> list[dict]:
    """The decoder alone (no encoder pass), one clip at a time: greedy token steps against drafted
    passes fed a perfect draft, at each of the set's draft lengths. The bound a better draft can reach."""
    from elp.heads.speculative import decode_row
    from training.draft_ctc import capture_frames

    head = model.adapter_sets[name].head
    inputs = [(frames[None], torch.tensor([frames.shape[0]]))
              for frames in (capture_frames(model, name, clip) for clip in clips)]
    spent: dict[str, list[float]] = {}
    passes: dict[str, int] = {}
    for turn in range(rounds):
        for features, lengths in inputs:
            limit = head.token_limits(lengths)[0]
            start = time.perf_counter()
            greedy = head._greedy(head._cross_states(features, lengths), [limit])
            spent.setdefault("greedy", []).append(time.perf_counter() - start)
            tokens = [int(t) for t in greedy[0].tolist() if t >= 0]
            passes["greedy"] = passes.get("greedy", 0) + (len(tokens) + 1 if turn == 0 else 0)
            start = time.perf_counter()
            ids, count = decode_row(head, head._cross_states(features, lengths), limit,
                                    PerfectDraft(tokens + [head.config.eot_id]))
            key = f"perfect draft, {head.config.draft_max_tokens} tokens a pass"
            spent.setdefault(key, []).append(time.perf_counter() - start)
            passes[key] = passes.get(key, 0) + (count if turn == 0 else 0)
            assert ids == tokens[:limit]
    return [{"system": key, "decoder_ms_per_clip": round(1000 * sum(values) / len(values), 1),
             "passes_per_clip": round(passes[key] / len(inputs), 2)} for key, values in spent.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    parser.add_argument("--set", type=Path, required=True, help="a decoder set with a draft")
    parser.add_argument("--manifest", nargs="+", required=True)
    parser.add_argument("--split", default=None, help="keep this split of the manifests (default: all)")
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, nargs="+", default=[1])
    parser.add_argument("--max-tokens", type=int, nargs="+", default=[8])
    parser.add_argument("--min-confidence", type=float, nargs="+", default=[0.0])
    parser.add_argument("--dtype", default="auto", choices=["float32", "int8", "auto"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bound", action="store_true", help="also time the decoder with a perfect draft")
    parser.add_argument("--name", default="speculative")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clips = load_clips(args.manifest, args.split, args.clips, args.seed)
    model, names = systems_for(args)
    run(model, names[0], clips[:2], 1)  # warm-up: the first calls build caches
    load_at_start = machine_load()
    table_rows = []
    for rows in args.rows:
        rounds, outputs = [], {}
        for turn in range(args.rounds):
            spent = {}
            for name in round_robin(names, turn):
                spent[name], texts, passes = run(model, name, clips, rows)
                outputs[name] = (texts, passes)
            rounds.append(spent)
        greedy_ms = statistics.median(r["greedy"] for r in rounds)
        for name in names:
            values = [r[name] for r in rounds]
            texts, passes = outputs[name]
            same = sum(a == b for a, b in zip(texts, outputs["greedy"][0], strict=True))
            table_rows.append({
                "system": name, "rows_a_call": rows, "ms_per_clip": round(statistics.median(values), 1),
                "ms_min": round(min(values), 1), "ms_max": round(max(values), 1),
                "vs_greedy": round(statistics.median(values) / greedy_ms, 3),
                "passes_per_clip": round(sum(passes) / len(passes), 2) if passes else None,
                "same_as_greedy": f"{same}/{len(texts)}"})
    bound = decoder_bound(model, names[-2], clips, args.rounds) if args.bound else []
    load_at_end = machine_load()
    seconds = [len(clip) / 16000 for clip in clips]
    title = (f"{args.set.name}: drafted vs greedy decoding, {len(clips)} clips of {min(seconds):.1f}-"
             f"{max(seconds):.1f} s ({', '.join(args.manifest)}{', ' + args.split if args.split else ''}), "
             f"encoder {args.dtype}, {args.rounds} interleaved rounds, {args.threads} threads")
    table = f"{title}\n{load_note(load_at_start, load_at_end)}\n\n" + markdown_table(
        table_rows, ["system", "rows_a_call", "ms_per_clip", "ms_min", "ms_max", "vs_greedy", "passes_per_clip",
                     "same_as_greedy"])
    if bound:
        table += "\n\nThe decoder alone with a perfect draft (the bound; steps counted with the end token):\n\n" + \
            markdown_table(bound, ["system", "decoder_ms_per_clip", "passes_per_clip"])
    write_results(args.name, {"title": title, "load_start": load_at_start, "load_end": load_at_end,
                              "rows": table_rows, "bound": bound}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
