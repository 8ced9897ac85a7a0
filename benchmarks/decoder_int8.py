"""Which parts of a decoder set's token steps may run in int8: agreement with the float decoder and CER
on validation clips only, by variant (nothing, the vocabulary projection, the layers, both).

The float decoder is the reference whose test figures are known; a variant that changes few of its
transcripts on validation speech keeps them. Clips (all validation, none a test clip): the real
validation prompts (``data/human-asr-valid``, French and Italian: read by sets converted for their
language, ``--set LANG=FOLDER``) and the corpus' English validation sentences and short commands
(``--corpus``: its ASR, intent and emotion valid rows, which carry their text). One clip a call; the
encoder is float32 for every variant (as the served default gives decoder rows), so only the decoder
differs.

    python -m benchmarks.decoder_int8 --set en=adapters_store/asr-whisper \
        fr=data/candidates/asr-whisper-fr it=data/candidates/asr-whisper-it
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import DEFAULT_BACKBONE, markdown_table, write_results
from benchmarks.stats import load_note, machine_load
from training.data.manifest import filter_split, read_manifest
from training.metrics import cer, wer

VARIANTS = {"float32": (), "float32 + int8 shortlist": (), "logits int8": ("logits",), "layers int8": ("layers",),
            "all int8": ("layers", "logits")}
SHORTLIST = "float32 + int8 shortlist"  # the served default on CPUs: the float32 tokens (elp.heads.shortlist)
SMOOTHED = " smoothed"  # a variant name ending so: SmoothQuant factors from the calibration clips' maxima


def input_maxima(model, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per step Linear (``layer.name``) and the vocabulary projection (``logits``): each input channel's
    largest magnitude while the float decoder transcribes ``waves`` (calibration clips, training split)."""
    head = model.adapter_sets["set"].head
    maxima: dict[str, torch.Tensor] = {}

    def record(label):
        def hook(module, args, output=None):
            values = (output if output is not None else args[0]).detach().abs().flatten(0, -2).amax(0)
            maxima[label] = torch.maximum(maxima[label], values) if label in maxima else values
        return hook

    handles = [head.decoder.layer_norm.register_forward_hook(record("logits"))]
    for index, layer in enumerate(head.decoder.layers):
        for name in head.STEP_LINEARS:
            handles.append(layer.get_submodule(name).register_forward_pre_hook(record(f"{index}.{name}")))
    try:
        for wave in waves:
            model.predict([wave], ["set"])
    finally:
        for handle in handles:
            handle.remove()
    return maxima


def validation_clips(args: argparse.Namespace) -> dict[str, list[tuple[str, Path, str]]]:
    """Per language: (data set, audio path, reference text) of the validation clips it reads."""
    clips: dict[str, list[tuple[str, Path, str]]] = {}
    for language in ("fr", "it"):
        manifest = args.human_valid / language / "asr.jsonl"
        if language in args.sets and manifest.exists():
            clips[language] = [(f"human valid {language}", Path(r.path), r.text or "")
                               for r in filter_split(read_manifest(manifest), "valid")]
    english = []
    for task, name in (("asr", "corpus valid sentences"), ("intent", "corpus valid commands"),
                       ("emotion", "corpus valid commands")):
        rows = filter_split(read_manifest(args.corpus / f"{task}.jsonl"), "valid")
        english += [(name, Path(r.path), r.text or "") for r in rows if r.text]
    clips["en"] = english
    return clips


def transcribe(backbone_dir: Path, folder: Path, variant: str, waves: list[torch.Tensor],
               calibration: list[torch.Tensor] | None = None) -> tuple[list[str], float]:
    from elp import MultiAdapterModel, load_backbone
    from elp.adapter_set import AdapterSet
    from elp.backbones.quantize import cpu_has_vnni

    model = MultiAdapterModel(load_backbone(str(backbone_dir)))
    adapter_set = AdapterSet.load(folder)
    model.add_adapter_set("set", adapter_set)  # on a CPU the shortlist comes with it
    if variant != SHORTLIST:
        adapter_set.head.use_float_projection()
    maxima = input_maxima(model, calibration) if calibration else None
    adapter_set.head.quantize_int8(full_range=cpu_has_vnni(), parts=VARIANTS[variant.removesuffix(SMOOTHED)],
                                   input_maxima=maxima)
    model.predict([waves[0]], ["set"])  # warm-up: the silence keys are built once
    start = time.perf_counter()
    texts = [model.predict([wave], ["set"])[0].text or "" for wave in waves]
    seconds = (time.perf_counter() - start) / len(waves)
    if (shortlist := adapter_set.head.shortlist) is not None:
        print(f"  shortlist: {shortlist.full_rows} of {shortlist.rows} tokens fell back to the full projection")
    return texts, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    parser.add_argument("--set", nargs="+", required=True, help="LANG=FOLDER: the decoder set for each language")
    parser.add_argument("--human-valid", type=Path, default=Path("data/human-asr-valid"))
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS) + ["all int8" + SMOOTHED],
                        help=f"of {list(VARIANTS)}, each optionally + {SMOOTHED!r}; float32 is always run")
    parser.add_argument("--calibration-clips", type=int, default=40,
                        help="corpus *train* ASR clips whose decoder inputs set the smoothing factors")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.sets = dict(item.split("=", 1) for item in args.set)
    from training.dataset import load_audio

    load_at_start = machine_load()
    train_rows = filter_split(read_manifest(args.corpus / "asr.jsonl"), "train")[: args.calibration_clips]
    calibration = [torch.from_numpy(load_audio(r.path)) for r in train_rows]
    variants = ["float32", *(v for v in args.variants if v != "float32")]
    per_clip: dict[str, dict] = {}
    for language, clips in validation_clips(args).items():
        waves = [torch.from_numpy(load_audio(str(path))) for _, path, _ in clips]
        for variant in variants:
            texts, seconds = transcribe(args.backbone, Path(args.sets[language]), variant, waves,
                                        calibration if variant.endswith(SMOOTHED) else None)
            entry = per_clip.setdefault(variant, {"texts": [], "refs": [], "sources": [], "seconds": []})
            entry["texts"] += texts
            entry["refs"] += [text for _, _, text in clips]
            entry["sources"] += [source for source, _, _ in clips]
            entry["seconds"] += [seconds] * len(clips)
            print(f"{language} {variant}: {len(clips)} clips, {1000 * seconds:.0f} ms a clip", flush=True)
    reference = per_clip["float32"]["texts"]
    rows = []
    for variant, entry in per_clip.items():
        for source in sorted(set(entry["sources"])) + ["all"]:
            picked = [i for i, s in enumerate(entry["sources"]) if source in ("all", s)]
            refs, hyps = [entry["refs"][i] for i in picked], [entry["texts"][i] for i in picked]
            rows.append({"variant": variant, "clips": source, "n": len(picked),
                         "same_as_float32": round(sum(hyps[k] == reference[i] for k, i in enumerate(picked))
                                                  / len(picked), 4),
                         "cer": round(cer(refs, hyps), 4), "wer": round(wer(refs, hyps), 4),
                         "ms_per_clip": round(1000 * sum(entry["seconds"][i] for i in picked) / len(picked), 1)})
    title = "Decoder token steps in int8, validation clips only (float32 encoder for every variant)"
    table = f"{title}\n{load_note(load_at_start, machine_load())}\n\n" + markdown_table(
        rows, ["variant", "clips", "n", "same_as_float32", "cer", "wer", "ms_per_clip"])
    write_results("decoder-int8", {"title": title, "rows": rows}, table)  # transcripts stay local
    return 0


if __name__ == "__main__":
    sys.exit(main())
