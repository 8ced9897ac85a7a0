"""Benchmark: what the ASR decoder's beam width, LM look-ahead and temperature buy, and cost in time.

The shipped ASR set's CTC log-probabilities are computed once for the first ``--clips`` test clips
of the corpus; then the same log-probabilities are decoded greedily and by beam search at each
``--beams`` width with and without the look-ahead, at temperature 1 and at the set's own temperature
(when it is not 1), all with the set's own LM and fusion weights. ``time_ratio`` = this row's decoding
time / the baseline's (beam 32 without look-ahead at temperature 1, the decoder the sets shipped with
before either), measured in the same run on the same clips.

    python -m benchmarks.decoding [--clips 300] [--beams 16 32 64 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import CORPUS_DIR, DEFAULT_BACKBONE, REPO_ROOT, markdown_table, write_results

BASELINE = (32, False, 1.0)  # (beam width, look-ahead, temperature)


def decode_grid(adapter_set: Any, clips: list[tuple[str, torch.Tensor]], beams: list[int]) -> list[dict[str, Any]]:
    """One row per decoder (greedy, then each beam width without and with look-ahead, at each
    temperature): CER, WER and decoding milliseconds per clip; the set's LM is restored afterwards."""
    from training.metrics import cer, wer

    language_model = adapter_set.language_model
    if language_model is None:
        raise SystemExit("the ASR set has no language model to decode with")
    shipped = language_model.config
    refs = [ref for ref, _ in clips]
    temperatures = sorted({1.0, shipped.temperature})
    decoders: list[tuple[str, int | None, bool | None, float | None]] = [("greedy", None, None, None)]
    decoders += [("beam", width, lookahead, temperature) for temperature in temperatures
                 for width in sorted({*beams, BASELINE[0]}) for lookahead in (False, True)]
    rows = []
    try:
        for kind, width, lookahead, temperature in decoders:
            if kind == "greedy":
                adapter_set.attach_language_model(None)
            else:
                language_model.config = dataclasses.replace(shipped, beam_width=width, lookahead=lookahead,
                                                            temperature=temperature)
                adapter_set.attach_language_model(language_model)
            started = time.perf_counter()
            hyps = [adapter_set.decode_ctc(log_probs) for _, log_probs in clips]
            seconds = time.perf_counter() - started
            rows.append({"decoder": kind, "beam": width, "lookahead": lookahead, "temperature": temperature,
                         "cer": round(cer(refs, hyps), 4), "wer": round(wer(refs, hyps), 4),
                         "ms_per_clip": round(1000 * seconds / len(clips), 1),
                         "shipped": kind == "beam" and (width, lookahead, temperature) == (
                             shipped.beam_width, shipped.lookahead, shipped.temperature)})
    finally:
        language_model.config = shipped
        adapter_set.attach_language_model(language_model)
    base = next(r for r in rows if (r["beam"], r["lookahead"], r["temperature"]) == BASELINE)
    for row in rows:
        row["time_ratio"] = round(row["ms_per_clip"] / base["ms_per_clip"], 2) if base["ms_per_clip"] else None
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=str(REPO_ROOT / DEFAULT_BACKBONE))
    parser.add_argument("--set", default=str(REPO_ROOT / "adapters_store" / "asr-default"))
    parser.add_argument("--corpus", default=str(CORPUS_DIR))
    parser.add_argument("--clips", type=int, default=300, help="first N test clips")
    parser.add_argument("--beams", type=int, nargs="+", default=[16, 32, 64, 128])
    args = parser.parse_args(argv)

    from elp import AdapterSet, MultiAdapterModel, load_backbone
    from training.data.manifest import filter_split, read_manifest
    from training.lm import KEY, clip_log_probs

    torch.manual_seed(0)
    adapter_set = AdapterSet.load(args.set)
    model = MultiAdapterModel(load_backbone(args.backbone))
    model.add_adapter_set(KEY, adapter_set)
    rows = filter_split(read_manifest(Path(args.corpus) / "asr.jsonl"), "test")[: args.clips]
    clips = clip_log_probs(model, rows)
    results = decode_grid(adapter_set, clips, args.beams)
    lm = adapter_set.config.language_model
    title = (f"ASR decoding, {Path(args.set).name} (alpha {lm.alpha}, beta {lm.beta}, unk {lm.unk_score_offset}, "
             f"temperature {lm.temperature}), "
             f"{len(clips)} test clips, one CPU thread of decoding per clip")
    columns = ["decoder", "beam", "lookahead", "temperature", "shipped", "cer", "wer", "ms_per_clip", "time_ratio"]
    write_results("decoding", {"title": title, "rows": results}, f"{title}\n\n" + markdown_table(results, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
