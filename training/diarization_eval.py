"""Diarization error rate of verification sets on conversation suites, through the served pipeline.

Each conversation is windowed (``SpeakerWindows``, the task's own), its windows embedded by the set (as the
server's batches embed them), and the windows clustered by the task's own ``respond``; DER (md-eval's
definition, 0.25 s collar) against the suite's turns. The windows' embeddings are computed once per set and
conversation, so a grid of the clustering's settings (``--offsets``, ``--refine``) costs almost nothing more.

    python -m training.diarization_eval adapters_store/verify-default \\
        --suite data/conversations-near-valid data/conversations-far-valid data/conversations-human-valid \\
        --offsets -0.1 0 0.1 --refine 0 2 --out results.json

Choose settings on ``valid`` suites only (the tool refuses to grid over a test suite); then read the test suites
once with the chosen settings (``--offsets X --refine R``). ``--known-speakers`` also scores each conversation
with its true number of speakers sent (``num_speakers``), which needs no threshold.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from elp import MultiAdapterModel
from elp.adapter_set import AdapterSet
from elp.backbones import load_backbone
from elp.tasks import TaskRequest, get_task
from elp.tasks.diarization import DiarizationTask
from training.dataset import load_audio
from training.diarization_naming import draw_enrolments, gallery_of, named_turns, naming_frames, source_clips, summary
from training.evaluation import predict_waveforms
from training.metrics import DiarizationErrors, diarization_errors
from training.suites.conversations import Conversation, read_conversations

SAMPLE_RATE = 16000


@dataclasses.dataclass
class Embedded:
    """A conversation's windows (seconds) and the set's prediction for each."""

    conversation: Conversation
    spans_s: list[tuple[float, float]]
    predictions: list[Any]


def embed(model: MultiAdapterModel, key: str, task: DiarizationTask, conversation: Conversation,
          batch_size: int) -> Embedded:
    waveform = load_audio(str(conversation.path))
    assert task.long_form is not None
    spans = task.long_form.spans(waveform, SAMPLE_RATE)
    windows = [np.ascontiguousarray(waveform[a:b]) for a, b in spans]
    predictions = predict_waveforms(model, key, windows, batch_size) if windows else []
    return Embedded(conversation, [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in spans], predictions)


def score(task: DiarizationTask, adapter_set: AdapterSet, embedded: list[Embedded],
          known_speakers: bool = False) -> dict[str, Any]:
    """DER over the suite (errors summed, then divided) and the speaker counts' accuracy."""
    total, right_count = DiarizationErrors(0.0, 0.0, 0.0, 0.0), 0
    for item in embedded:
        fields = {"num_speakers": len(item.conversation.speakers)} if known_speakers else {}
        answer = task.respond(TaskRequest(config=adapter_set.config, rows=item.predictions,
                                          durations_s=[b - a for a, b in item.spans_s], fields=fields,
                                          segments_s=item.spans_s))
        hypothesis = [(turn["start_s"], turn["end_s"], turn["speaker"]) for turn in answer["turns"]]
        total += diarization_errors(item.conversation.turns, hypothesis)
        right_count += answer["speaker_count"] == len(item.conversation.speakers)
    return {"der": round(100 * total.der, 2), "missed": round(100 * total.missed_s / total.scored_s, 2),
            "false_alarm": round(100 * total.false_alarm_s / total.scored_s, 2),
            "confusion": round(100 * total.confusion_s / total.scored_s, 2),
            "speaker_count_right": round(100 * right_count / max(len(embedded), 1), 1),
            "scored_s": round(total.scored_s, 1)}


def clip_embedder(model: MultiAdapterModel, key: str) -> Callable[[Any], torch.Tensor]:
    """A manifest row's clip embedded by the set, once per path (an enrolment clip, as ``POST /speakers`` embeds it)."""

    @functools.cache
    def embedding(path: str) -> torch.Tensor:
        with torch.inference_mode():
            return predict_waveforms(model, key, [load_audio(path)], 1)[0].embedding

    return lambda row: embedding(row.path)


def naming(task: DiarizationTask, adapter_set: AdapterSet, embedded: list[Embedded], folder: str,
           embed_clip: Any, offsets: list[float], clips: int = 3) -> dict[str, Any]:
    """Naming accuracy by ``naming_offset`` (``training.diarization_naming``): each conversation with its own
    enrolments of ``clips`` clips each (all its speakers but one, and two others), answered by the task with that
    gallery. One clip is how OpenAI's route names speakers (``known_speaker_references[]``)."""
    sources = source_clips(folder)
    cases = []
    for index, item in enumerate(embedded):
        left_out, enrolments = draw_enrolments(item.conversation.speakers, item.conversation.id, sources,
                                               np.random.default_rng(index), clips=clips)
        cases.append((item, set(enrolments), gallery_of(enrolments, embed_clip)))
    results = {}
    for offset in offsets:
        named = dataclasses.replace(task, naming_offset=offset)
        counts = []
        for item, enrolled, gallery in cases:
            answer = named.respond(TaskRequest(config=adapter_set.config, rows=item.predictions,
                                               durations_s=[b - a for a, b in item.spans_s], fields={},
                                               gallery=gallery, segments_s=item.spans_s))
            counts.append(naming_frames(item.conversation.turns, named_turns(answer), enrolled))
        results[f"naming_offset={offset:g}"] = summary(counts)
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.diarization_eval", description=__doc__.splitlines()[0])
    p.add_argument("adapter", nargs="+", help="verification adapter-set folder(s)")
    p.add_argument("--suite", nargs="+", required=True, help="conversation suite folder(s)")
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--dtype", default="auto", choices=["float32", "int8", "auto"], help="the encoder as served")
    p.add_argument("--offsets", type=float, nargs="+", default=None, help="threshold offsets (default: served)")
    p.add_argument("--refine", type=int, nargs="+", default=None, help="refinement rounds (default: served)")
    p.add_argument("--known-speakers", action="store_true", help="also score with the true speaker count sent")
    p.add_argument("--name-speakers", type=float, nargs="*", default=None, metavar="OFFSET",
                   help="also score naming the speakers by enrolled ones, at these naming offsets (none: served)")
    p.add_argument("--enrolment-clips", type=int, default=3,
                   help="clips per enrolled speaker with --name-speakers (1: a known-speaker reference clip)")
    p.add_argument("--limit", type=int, default=None, help="only the first N conversations of each suite (a smoke run)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", default=None, help="write the JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    served = get_task("diarization")
    assert isinstance(served, DiarizationTask)
    offsets, refines = args.offsets or [served.threshold_offset], args.refine or [served.refine_steps]
    naming_offsets = args.name_speakers or [served.naming_offset]
    suites = {folder: read_conversations(folder)[: args.limit] for folder in args.suite}
    grid = len(offsets) * len(refines) * (len(naming_offsets) if args.name_speakers is not None else 1)
    if grid > 1 and any(c.split != "valid" for rows in suites.values() for c in rows):
        raise SystemExit("a grid of settings chooses: run it on valid suites only, then read test with one setting")
    quantization = None if args.dtype == "float32" else args.dtype
    model = MultiAdapterModel(load_backbone(args.backbone, quantization=quantization)).eval()
    report: dict[str, Any] = {"dtype": args.dtype, "sets": {}}
    for folder in args.adapter:
        key, adapter_set = Path(folder).name, AdapterSet.load(folder)
        model.add_adapter_set(key, adapter_set)
        results: dict[str, Any] = {}
        for suite, conversations in suites.items():
            started = time.perf_counter()
            with torch.inference_mode():
                embedded = [embed(model, key, served, c, args.batch_size) for c in conversations]
            elapsed = time.perf_counter() - started
            audio_s = sum(c.duration_s for c in conversations)
            rows: dict[str, Any] = {"conversations": len(conversations), "audio_s": round(audio_s, 1),
                                    "windows": sum(len(e.spans_s) for e in embedded),
                                    "real_time_factor": round(elapsed / audio_s, 4)}
            for offset in offsets:
                for refine in refines:
                    task = dataclasses.replace(served, threshold_offset=offset, refine_steps=refine)
                    rows[f"offset={offset:g},refine={refine}"] = score(task, adapter_set, embedded)
            if args.known_speakers:
                rows["known_speakers"] = score(served, adapter_set, embedded, known_speakers=True)
            if args.name_speakers is not None:
                rows |= naming(served, adapter_set, embedded, suite, clip_embedder(model, key), naming_offsets,
                               args.enrolment_clips)
            results[Path(suite).name] = rows
            print(json.dumps({key: {Path(suite).name: rows}}), flush=True)
        report["sets"][key] = results
        model.remove_adapter_set(key)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
