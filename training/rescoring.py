"""``python -m training.rescoring SET --out CANDIDATE``: give an ASR set a second pass over its beam (the checkpoint's
own decoder rescoring its n-best, ``elp.decoding.rescoring``), its weights chosen on validation speech.

Each clip is encoded and searched once; the decoder scores the largest n-best once; then every (weight, token bonus,
n) of the grid is a re-ranking of numbers already computed. The setting with the lowest mean criterion over the
sources (the corpus' valid split and each ``--valid-data``; each source weighs the same) is written into the set's
``rescoring``; the set's weights and LM stay as they are. Rows reserved for final figures are refused, as
``elp-add-lm`` refuses them.

    python -m training.rescoring adapters_store/asr-default --out CANDIDATE \\
        --valid-data kokoro=data/kokoro-asr-valid/asr.jsonl sky=data/skyvox-voices-400/asr.jsonl:valid
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.decoding.beam import Hypothesis
from elp.decoding.config import RescoringConfig
from elp.decoding.rescoring import checkpoint_rescorer, rescored_index
from elp.errors import ConfigError
from training.data.manifest import filter_split, read_manifest
from training.dataset import load_audio
from training.evaluation import length_batches
from training.lm import validation_sources
from training.metrics import cer, wer

KEY = "asr"


@dataclass
class ScoredClip:
    """One validation clip: its reference, its beam's n-best, the decoder's log-probability and token count of each."""

    reference: str
    hypotheses: list[Hypothesis]
    decoder_log_probs: list[float]
    token_counts: list[int]

    def pick(self, config: RescoringConfig) -> str:
        """What ``DecoderRescorer.best`` answers under ``config``."""
        return self.hypotheses[rescored_index(self.hypotheses, self.decoder_log_probs, self.token_counts, config)].text


@torch.inference_mode()
def scored_clips(model: MultiAdapterModel, adapter_set: AdapterSet, rows: list, nbest: int,
                 batch_size: int = 8) -> list[ScoredClip]:
    """Every clip's n-best (the set's own search) and their decoder log-probabilities on the set's own frames."""
    vocab_size = len(adapter_set.config.vocab or [])
    search = adapter_set.post_processor.beam_decoder
    assert adapter_set.rescorer_source is not None
    rescorer = checkpoint_rescorer(adapter_set.rescorer_source, "float32-exact")  # the reference scores
    clips = []
    for batch in length_batches(rows, batch_size):
        outputs = model.head_outputs([torch.from_numpy(load_audio(r.path)) for r in batch], [KEY] * len(batch))
        for row, output in zip(batch, outputs, strict=True):
            log_probs, frames = output.output[:, :vocab_size], output.output[:, vocab_size:]
            hypotheses = search.nbest(log_probs.numpy(), nbest)
            targets = [rescorer.token_ids(h.text) for h in hypotheses]
            clips.append(ScoredClip(row.text or "", hypotheses, rescorer.target_log_probs(frames, targets),
                                    [len(target) for target in targets]))
    return clips


def rates(clips: list[ScoredClip], config: RescoringConfig | None) -> dict[str, float]:
    """CER and WER of the rescored answers (``config`` None: the search's own best)."""
    refs = [clip.reference for clip in clips]
    hyps = [clip.hypotheses[0].text if config is None else clip.pick(config) for clip in clips]
    return {"cer": cer(refs, hyps), "wer": wer(refs, hyps)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter_set", help="ASR adapter-set folder with a word LM (rewritten in place unless --out)")
    p.add_argument("--out", help="write the set with its rescoring here instead")
    p.add_argument("--backbone", default="models/whisper-base", help="a Whisper checkpoint folder (its decoder)")
    p.add_argument("--corpus", default="data/corpus")
    p.add_argument("--valid-data", nargs="+", default=[], metavar="NAME=MANIFEST[:SPLIT]",
                   help="more validation speech beside the corpus' valid split (as elp-add-lm's)")
    p.add_argument("--weights", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    p.add_argument("--bonuses", type=float, nargs="+", default=[-1.0, 0.0, 0.5, 1.0, 2.0, 3.0])
    p.add_argument("--nbest", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--select", choices=["cer", "wer"], default="wer")
    p.add_argument("--max-clips", type=int, default=0, help="score the first N clips of each source only")
    p.add_argument("--by-precision", nargs="+", default=[], metavar="KEY=N",
                   help="also record, as the set's setting for KEY (rescoring.by_precision: float32, or float32@int8 "
                   "beside an int8 encoder), the grid's best with N transcripts: where the decoder runs in float32 the "
                   "pass costs more a transcript (asr-default's card: float32=8 float32@int8=4)")
    return p


def variant_sizes(specs: list[str], grid: list[int]) -> dict[str, int]:
    """``--by-precision KEY=N ...`` as {KEY: N}; each N must be among the grid's, each KEY a valid variant."""
    sizes = {}
    for spec in specs:
        key, _, size = spec.partition("=")
        if not size.isdigit() or int(size) not in grid:
            raise SystemExit(f"--by-precision {spec}: N must be one of --nbest {grid}")
        try:
            RescoringConfig(by_precision={key: {}})  # refuses an unknown precision or encoder
        except ConfigError as exc:
            raise SystemExit(f"--by-precision {spec}: {exc}") from exc
        sizes[key] = int(size)
    return sizes


SETTING_FIELDS = ("weight", "token_bonus", "nbest")


def recorded_variants(chosen: RescoringConfig, best: dict[str, tuple[float, RescoringConfig]]) -> dict[str, dict]:
    """``by_precision`` for the variants' best settings: each as its changes to ``chosen``, and only where the set
    would otherwise read another setting there (a ``float32@int8`` one is compared with what ``float32`` gives)."""
    recorded: dict[str, dict] = {}
    for key, (_, variant) in sorted(best.items(), key=lambda item: "@" in item[0]):  # plain precisions first
        precision, _, encoder = key.partition("@")
        wanted = tuple(getattr(variant, name) for name in SETTING_FIELDS)
        otherwise = dataclasses.replace(chosen, by_precision=recorded).at_precision(precision, encoder or None)
        if tuple(getattr(otherwise, name) for name in SETTING_FIELDS) != wanted:
            recorded[key] = {name: getattr(variant, name) for name in SETTING_FIELDS
                             if getattr(variant, name) != getattr(chosen, name)}
    return recorded


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    variants = variant_sizes(args.by_precision, args.nbest)  # refused before minutes of scoring
    adapter_set = AdapterSet.load(args.adapter_set)
    if not adapter_set.task_spec.supports_language_model or adapter_set.language_model is None:
        raise SystemExit(f"{args.adapter_set}: rescoring needs an ASR set with a word LM (elp-add-lm)")
    adapter_set.config.rescoring = RescoringConfig(nbest=max(args.nbest))  # rows then carry their frames
    model = MultiAdapterModel(load_backbone(args.backbone))
    model.add_adapter_set(KEY, adapter_set)
    rows = filter_split(read_manifest(Path(args.corpus) / "asr.jsonl"), "valid")[: args.max_clips or None]
    sources = {"valid": rows, **validation_sources(args.valid_data, args.max_clips)}
    clips = {name: scored_clips(model, adapter_set, source, max(args.nbest)) for name, source in sources.items()}
    report: dict = {"first_pass": {name: rates(c, None) for name, c in clips.items()}}
    best: tuple[float, RescoringConfig, dict] | None = None
    best_variant: dict[str, tuple[float, RescoringConfig]] = {}
    for weight, bonus, nbest in itertools.product(args.weights, args.bonuses, args.nbest):
        config = RescoringConfig(weight=weight, token_bonus=bonus, nbest=nbest)
        scores = {name: rates(c, config) for name, c in clips.items()}
        mean = sum(s[args.select] for s in scores.values()) / len(scores)
        shown = " ".join(f"{name} CER {s['cer']:.4f} WER {s['wer']:.4f}" for name, s in scores.items())
        print(f"weight {weight} bonus {bonus} nbest {nbest}: {shown} mean {args.select} {mean:.4f}", flush=True)
        if best is None or mean < best[0]:
            best = (mean, config, scores)
        for key, size in variants.items():
            if nbest == size and (key not in best_variant or mean < best_variant[key][0]):
                best_variant[key] = (mean, config)
    assert best is not None
    _, chosen, scores = best
    chosen = dataclasses.replace(chosen, by_precision=recorded_variants(chosen, best_variant))
    adapter_set.config.rescoring = chosen
    report["rescoring"] = {**dataclasses.asdict(chosen), "sources": scores, "select": args.select,
                           "manifests": {name: spec.split("=", 1)[1] for name, spec in
                                         zip(list(sources)[1:], args.valid_data, strict=True)}}
    adapter_set.config.metrics["rescoring_chosen_on"] = report["rescoring"]
    adapter_set.save(args.out or args.adapter_set)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
