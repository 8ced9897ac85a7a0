"""Benchmark: what one clip costs each ASR system a user can pick, alone (batch 1), on the same clips.

Systems: every ``--adapter`` ASR set served by the library as the server runs it (encoder pass, head,
post-processing: ``MultiAdapterModel.predict``), at each ``--dtype`` of the encoder, and full Whisper
base ``generate`` (its own 30 s padded input). Rounds are interleaved (each round times every system
on every clip, a different system first each round); reported: the median over rounds of each
system's mean milliseconds a clip, min-max, and the ratio to Whisper ``generate`` in the same run.

    python -m benchmarks.asr_latency --adapter adapters_store/asr-default adapters_store/asr-whisper \
        [--dtype float32 auto] [--clips 20] [--rounds 3] [--without-word-times] [--python-search] \
        [--rescoring [float32 float32-exact bfloat16]]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import corpus_clips, decode_clip, markdown_table, write_results
from benchmarks.set_latency import add_timing_options, interleaved, served_model
from benchmarks.stats import load_note

WHISPER = "whisper base generate"


def served_system(backbone_dir: Path, adapter_dir: Path, dtype: str, word_times: bool = True,
                  python_search: bool = False, rescoring: str | None = None) -> Callable[[np.ndarray], str]:
    """The set as the server runs it (``prepare_for_serving``); ``word_times=False``: a decoder set without
    its words' times (the cost of the teacher-forced pass that gives them); ``python_search``: an LM set's
    beam search in Python (``elp.decoding.beam``, the reference the compiled search replaced); ``rescoring``: its
    second pass on (``ELP_ASR_RESCORING=true``) in that precision ("native": this CPU's)."""
    model = served_model(backbone_dir, adapter_dir, dtype, rescoring is not None,
                         None if rescoring in (None, "native") else rescoring)
    adapter_set = model.adapter_sets[adapter_dir.name]
    if not word_times and adapter_set.config.decoder is not None:
        adapter_set.head.time_words(False)
        adapter_set.refresh_post_processor()
    if python_search:
        from elp.decoding.beam import CTCBeamDecoder

        transcriber = adapter_set.post_processor
        transcriber._decoder = CTCBeamDecoder(transcriber.vocab, transcriber.language_model)
    return lambda wave: model.predict([torch.from_numpy(wave)], [adapter_dir.name])[0].text or ""


def carries(folder: Path, part: str) -> bool:
    """Whether the set in ``folder`` has ``part`` in its config (``language_model``, ``rescoring``, ``decoder``)."""
    return json.loads((folder / "adapter_config.json").read_text()).get(part) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", type=Path, nargs="+", required=True, help="ASR set folders")
    add_timing_options(parser, "float32")
    parser.add_argument("--without-word-times", action="store_true",
                        help="also time each decoder set without its words' times")
    parser.add_argument("--python-search", action="store_true",
                        help="also time each LM set with its beam search in Python (the compiled one's reference)")
    parser.add_argument("--rescoring", nargs="*", default=None,
                        choices=["native", "float32", "float32-exact", "bfloat16"],
                        help="also time each set that carries a second pass with it on (ELP_ASR_RESCORING=true), "
                        "in each precision named (none named: this CPU's native one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from training.suites.baselines import whisper_generate

    waves = [decode_clip(clip.data) for clip in corpus_clips(args.clips)]
    systems = {f"{folder.name} ({dtype})": served_system(args.backbone, folder, dtype)
               for folder in args.adapter for dtype in args.dtype}
    if args.without_word_times:  # decoder sets also without their words' times
        systems |= {f"{folder.name} ({dtype}, no word times)": served_system(args.backbone, folder, dtype, False)
                    for folder in args.adapter for dtype in args.dtype if carries(folder, "decoder")}
    if args.python_search:
        systems |= {f"{folder.name} ({dtype}, Python search)": served_system(args.backbone, folder, dtype,
                                                                            python_search=True)
                    for folder in args.adapter for dtype in args.dtype if carries(folder, "language_model")}
    if args.rescoring is not None:
        systems |= {f"{folder.name} ({dtype}, rescoring {precision})": served_system(args.backbone, folder, dtype,
                                                                                 rescoring=precision)
                    for folder in args.adapter for dtype in args.dtype if carries(folder, "rescoring")
                    for precision in args.rescoring or ["native"]}
    systems[WHISPER] = whisper_generate(str(args.backbone))
    result = interleaved(systems, waves, args.rounds, args.threads)
    whisper_ms = next(row["ms_per_clip"] for row in result["rows"] if row["system"] == WHISPER)
    for row in result["rows"]:
        row["vs_whisper_generate"] = round(row["ms_per_clip"] / whisper_ms, 3)
    result["title"] = "ASR, " + result["title"][0].lower() + result["title"][1:]
    table = f"{result['title']}\n{load_note(result['load_start'], result['load_end'])}\n\n" + markdown_table(
        result["rows"], ["system", "ms_per_clip", "ms_min", "ms_max", "vs_whisper_generate"])
    write_results("asr-latency", result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
