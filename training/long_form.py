"""Long recordings, measured: does transcribing in segments keep the per-clip accuracy?

No suite holds transcribed recordings of minutes, so this one is made from the suites' clips: consecutive
clips of a manifest joined into recordings of ``--recording-s`` seconds with pauses between them (the gap
filled with noise at the level of the quieter neighbour's noise floor, so a pause is not digital
silence), or with no pause at all (``--gap 0``: cuts must then fall inside the speech). Each recording is
transcribed the way the server does it (``elp.long_form.LongFormSplitter``, the segments as rows of
batches, texts joined) or as a live stream would be (``--stream-end-pause``: ``elp.streaming.Endpointer``'s
utterances), and compared with the same clips transcribed one by one (what a client that sent
the clips separately would get), on the recording's reference (the clips' texts joined). The real metric
code (``training.metrics``) counts the errors.

    python -m training.long_form adapters_store/asr-default --corpus data/corpus --split valid \
        --min-pause 0.15 0.3 0.5 --margin-db 6 10 15 --out docs/results/long-form-valid.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elp import MultiAdapterModel, load_backbone
from elp.long_form import LongFormSplitter, join_texts
from elp.speech_activity import evaluation_gate, frame_levels_dbfs
from elp.streaming import Endpointer, EndpointSettings
from elp.tasks import get_task
from training.data.manifest import ManifestRow, filter_split, read_manifest
from training.dataset import SAMPLE_RATE, load_audio
from training.evaluate import add_rescoring_options, served_set
from training.evaluation import predict_waveforms
from training.metrics import char_errors, word_errors

#: where a recording is cut: (start, end) samples of each piece read
Spans = Callable[[np.ndarray], list[tuple[int, int]]]


@dataclass
class Recording:
    waveform: np.ndarray
    reference: str
    clips: list[tuple[np.ndarray, str]]  # the clips it was made of, with their texts


def noise_floor(clip: np.ndarray) -> float:
    """RMS of the clip's quietest tenth of frames (its background noise; 0 for a clean synthetic clip)."""
    levels = np.sort(frame_levels_dbfs(clip, SAMPLE_RATE))
    quiet = levels[: max(1, levels.size // 10)]
    return float(np.sqrt(np.mean(10.0 ** (quiet / 10.0))))


def build_recordings(rows: Sequence[ManifestRow], recording_s: float, gap_s: tuple[float, float],
                     seed: int = 0) -> list[Recording]:
    """Consecutive manifest rows joined until each recording lasts ``recording_s`` (the last may be shorter),
    with seeded pauses of ``gap_s`` (low, high) seconds between clips."""
    rng = np.random.default_rng(seed)
    recordings, parts, clips = [], [], []
    length = 0
    for row in rows:
        clip = load_audio(row.path)
        if parts:
            gap = int(rng.uniform(*gap_s) * SAMPLE_RATE)
            level = min(noise_floor(clips[-1][0]), noise_floor(clip))
            parts.append((level * rng.standard_normal(gap)).astype(np.float32))
            length += gap
        parts.append(clip)
        clips.append((clip, row.text or ""))
        length += clip.size
        if length >= recording_s * SAMPLE_RATE:
            recordings.append(Recording(np.concatenate(parts), join_texts([t for _, t in clips]), clips))
            parts, clips, length = [], [], 0
    if clips:
        recordings.append(Recording(np.concatenate(parts), join_texts([t for _, t in clips]), clips))
    return recordings


def transcribe(model: MultiAdapterModel, key: str, waveforms: Sequence[np.ndarray], batch_size: int) -> list[str]:
    """Texts of the waveforms, in order, as served (``training.evaluation.predict_waveforms``)."""
    return [prediction.text or "" for prediction in predict_waveforms(model, key, waveforms, batch_size)]


def splitter_spans(splitter: LongFormSplitter) -> Spans:
    """The spans ``POST /asr`` reads a long recording in (the splitter with the deployed speech gate)."""
    splitter = dataclasses.replace(splitter, speech_gate=evaluation_gate(splitter.speech_gate))
    return lambda waveform: splitter.spans(waveform, SAMPLE_RATE)


def stream_spans(settings: EndpointSettings, piece_s: float = 0.1) -> Spans:
    """The utterances a live stream of the recording is answered in (sent in ``piece_s`` pieces)."""
    def spans(waveform: np.ndarray) -> list[tuple[int, int]]:
        endpointer, step, found = Endpointer(settings), int(piece_s * SAMPLE_RATE), []
        for at in range(0, len(waveform), step):
            found += endpointer.push(waveform[at:at + step])
        return [(u.start, u.end) for u in found + endpointer.finish() if u.final]
    return spans


def segmented_texts(model: MultiAdapterModel, key: str, recordings: Sequence[Recording],
                    spans_of: Spans, batch_size: int) -> tuple[list[str], int]:
    """Each recording transcribed in the spans ``spans_of`` gives; also the number of segments."""
    pieces, owners = [], []
    for index, recording in enumerate(recordings):
        for start, end in spans_of(recording.waveform):
            pieces.append(recording.waveform[start:end])
            owners.append(index)
    texts = transcribe(model, key, pieces, batch_size)
    joined = [join_texts([t for t, owner in zip(texts, owners, strict=True) if owner == index])
              for index in range(len(recordings))]
    return joined, len(pieces)


def rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    return {"wer": round(100 * word_errors(references, hypotheses).rate, 2),
            "cer": round(100 * char_errors(references, hypotheses).rate, 2)}


def evaluate(model: MultiAdapterModel, key: str, recordings: Sequence[Recording],
             splitters: Sequence[LongFormSplitter], batch_size: int,
             streams: Sequence[EndpointSettings] = ()) -> dict:
    """Per-clip baseline, one row per splitter and one per live-stream endpointer, on the same recordings."""
    references = [r.reference for r in recordings]
    started = time.perf_counter()
    per_clip = [join_texts(transcribe(model, key, [c for c, _ in r.clips], batch_size)) for r in recordings]
    rows = [{"system": "clips one by one", **rates(references, per_clip),
             "seconds": round(time.perf_counter() - started, 1)}]
    for splitter in splitters:
        started = time.perf_counter()
        texts, segments = segmented_texts(model, key, recordings, splitter_spans(splitter), batch_size)
        rows.append({"system": "segments", "splitter": dataclasses.asdict(splitter), "segments": segments,
                     **rates(references, texts), "seconds": round(time.perf_counter() - started, 1)})
    for settings in streams:
        started = time.perf_counter()
        texts, segments = segmented_texts(model, key, recordings, stream_spans(settings), batch_size)
        rows.append({"system": "live stream", "endpointer": dataclasses.asdict(settings), "segments": segments,
                     **rates(references, texts), "seconds": round(time.perf_counter() - started, 1)})
    return {"recordings": len(recordings), "audio_s": round(sum(r.waveform.size for r in recordings) / SAMPLE_RATE, 1),
            "rows": rows}


def write_recordings(recordings: Sequence[Recording], folder: Path) -> None:
    """``NNN.wav`` (16 kHz, 16-bit) and ``references.jsonl`` (file, seconds, text)."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "references.jsonl").open("w") as references:
        for index, recording in enumerate(recordings):
            name = f"{index:03d}.wav"
            sf.write(folder / name, np.clip(recording.waveform, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
            references.write(json.dumps({"file": name, "duration_s": round(recording.waveform.size / SAMPLE_RATE, 3),
                                         "text": recording.reference}) + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.long_form", description=__doc__.splitlines()[0])
    p.add_argument("adapter", help="an ASR adapter-set folder")
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--dtype", default="auto", choices=["float32", "int8", "auto"], help="the encoder as served")
    p.add_argument("--corpus", action="append", required=True, help="suite folder(s) with asr.jsonl (repeatable)")
    p.add_argument("--split", default=None, help="only this split (valid to choose, test to report)")
    p.add_argument("--recording-s", type=float, default=60.0)
    p.add_argument("--gap", type=float, nargs=2, default=(0.3, 1.0), metavar=("LOW", "HIGH"),
                   help="pause between clips, seconds (0 0: clips butted together)")
    grid = p.add_argument_group("splitters (every combination; default: the ASR task's own)")
    grid.add_argument("--max-segment", type=float, nargs="+", default=None)
    grid.add_argument("--min-pause", type=float, nargs="+", default=None)
    grid.add_argument("--margin-db", type=float, nargs="+", default=None)
    grid.add_argument("--min-segment", type=float, nargs="+", default=None)
    grid.add_argument("--pause-detector", nargs="+", default=None, choices=["level", "voice"])
    grid.add_argument("--pause-probability", type=float, nargs="+", default=None)
    p.add_argument("--stream-end-pause", type=float, nargs="*", default=[],
                   help="also as live streams (elp.streaming.Endpointer), one row per end pause (seconds)")
    add_rescoring_options(p)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the JSON here")
    p.add_argument("--write-recordings", default=None, metavar="DIR",
                   help="also write the recordings as 16-bit WAV with their references (to send them to a server)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    quantization = None if args.dtype == "float32" else args.dtype
    model = MultiAdapterModel(load_backbone(args.backbone, quantization=quantization)).eval()
    key = Path(args.adapter).name
    model.add_adapter_set(key, served_set(args.adapter, args.asr_rescoring, args.rescoring_dtype,
                                                model.backbone))
    served = get_task("asr").long_form or LongFormSplitter()
    probabilities = args.pause_probability or [served.pause_probability]
    splitters = [dataclasses.replace(served, max_segment_s=longest, min_pause_s=pause, pause_margin_db=margin,
                                     min_segment_s=shortest, pause_detector=detector, pause_probability=probability)
                 for longest in args.max_segment or [served.max_segment_s]
                 for pause in args.min_pause or [served.min_pause_s]
                 for margin in args.margin_db or [served.pause_margin_db]
                 for shortest in args.min_segment or [served.min_segment_s]
                 for detector in args.pause_detector or [served.pause_detector]
                 for probability in (probabilities if detector == "voice" else probabilities[:1])]  # level: unused
    streams = [EndpointSettings(end_pause_s=pause, partial_interval_s=0) for pause in args.stream_end_pause]
    report = {"adapter": key, "dtype": args.dtype, "recording_s": args.recording_s, "gap_s": list(args.gap),
              "suites": {}}
    for corpus in args.corpus:
        rows = read_manifest(Path(corpus) / "asr.jsonl")
        rows = filter_split(rows, args.split) if args.split else rows
        recordings = build_recordings(rows, args.recording_s, tuple(args.gap), args.seed)
        if args.write_recordings:
            write_recordings(recordings, Path(args.write_recordings) / Path(corpus).name)
        with torch.inference_mode():
            report["suites"][corpus] = {"clips": len(rows), **evaluate(model, key, recordings, splitters,
                                                                       args.batch_size, streams)}
        print(json.dumps({corpus: report["suites"][corpus]}), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
