"""``elp-add-lm``: give an ASR set a word n-gram LM (bigram or trigram) for beam-search decoding, tuned on validation.

The LM is built from the corpus' *training* transcripts, its unigrams mixed with general English
word frequencies (``wordfreq``) so unseen words still score. With ``--background-arpa`` it is
interpolated with a general-English model (``python -m training.general_lm`` makes one offline),
which knows the word pairs a few thousand training sentences never show; ``--order 3`` adds a trigram level
(the training text's triples and the background's, interpolated the same way). ``alpha``, ``beta``, the
penalty for a word outside the vocabulary and the interpolation weight are chosen on the validation
split (by the mean of CER and WER unless ``--select`` says otherwise). Test clips are only scored
(greedy and LM) for the record. ``--keep-lm`` re-tunes only the fusion weights, temperature, beam and look-ahead of
the LM the set already carries (no rebuild: the same tensors). ``--text`` adds text-only sentences
(a user's domain text; ``python -m training.corpus.lm_text`` writes the offline corpus' own), minus any
line holding a validation or test transcript. ``--valid-data`` adds validation speech beside the
corpus' valid split (natural voices, real speakers' validation clips): the setting with the lowest mean
criterion over all the sources wins, and rows reserved for final figures (test speakers, test suites:
``training.suites.guard.choice_refusal``) are refused.

    elp-add-lm adapters_store/asr-default --corpus data/corpus
    elp-add-lm adapters_store/asr-default --corpus data/corpus --background-arpa data/lm/en-us-bigram.arpa
    elp-add-lm adapters_store/asr-default --corpus data/corpus --order 3 --background-arpa data/lm/en-us-trigram.arpa
    elp-add-lm adapters_store/asr-default --corpus data/corpus --keep-lm --beam-width 64
    elp-add-lm adapters_store/asr-default --corpus data/corpus --text my-domain-sentences.txt
    elp-add-lm adapters_store/asr-default --corpus data/corpus --keep-lm --select wer \
        --valid-data kokoro=data/kokoro-asr-valid/asr.jsonl game=data/gamevox/asr.jsonl:valid
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path

import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.decoding import WordBigramLM
from elp.decoding.arpa import read_arpa
from elp.model import pad_waveforms
from elp.tasks import get_task
from training.corpus.text import normalise
from training.data.manifest import filter_split, read_manifest
from training.dataset import load_audio
from training.evaluation import length_batches
from training.metrics import cer, wer
from training.suites.guard import HeldOutDataError, check_choice_rows

KEY = "set"


def general_frequencies(num_words: int, alphabet: str) -> dict[str, float]:
    """The ``num_words`` most frequent English words (``wordfreq``) spelled in ``alphabet``."""
    from wordfreq import top_n_list, word_frequency

    allowed = set(alphabet)
    return {w: word_frequency(w, "en") for w in top_n_list("en", num_words) if set(w) <= allowed}


@torch.inference_mode()
def clip_log_probs(model: MultiAdapterModel, rows: list, batch_size: int = 16) -> list[tuple[str, torch.Tensor]]:
    """(reference, CTC log-probabilities) per clip: the acoustic pass runs once for the whole grid."""
    out = []
    for batch in length_batches(rows, batch_size):
        waves, lengths = pad_waveforms([torch.from_numpy(load_audio(r.path)) for r in batch])
        group = model(waves, lengths, [KEY] * len(batch))[KEY]
        for position, row in enumerate(group.rows):
            out.append((batch[row].text or "", group.output[position, : int(group.lengths[position])].float()))
    return out


def score(adapter_set: AdapterSet, clips: list[tuple[str, torch.Tensor]]) -> dict[str, float]:
    refs = [ref for ref, _ in clips]
    hyps = [adapter_set.decode_ctc(log_probs) for _, log_probs in clips]
    return {"cer": cer(refs, hyps), "wer": wer(refs, hyps)}


def text_lines(paths: list[str], held_out: set[str]) -> tuple[list[str], int]:
    """Normalised non-empty lines of ``paths``, without those that contain a held-out transcript as
    whole words (so validation picks weights, and test scores, on sentences the LM never read);
    returns the lines kept and how many were dropped."""
    needles = [f" {t} " for t in held_out]
    kept, dropped = [], 0
    for path in paths:
        for raw in Path(path).read_text(encoding="utf-8").splitlines():
            line = normalise(raw)
            if not line:
                continue
            padded = f" {line} "
            if any(needle in padded for needle in needles):
                dropped += 1
            else:
                kept.append(line)
    return kept, dropped


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter_set", help="ASR adapter-set folder (rewritten in place unless --out)")
    p.add_argument("--out", help="write the set with its LM here instead")
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--corpus", default="data/corpus")
    p.add_argument("--general-words", type=int, default=50000, help="wordfreq words in the vocabulary (0: none)")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    p.add_argument("--betas", type=float, nargs="+", default=[1.5, 3.0, 4.5])
    p.add_argument("--unk-offsets", type=float, nargs="+", default=[-10.0, -20.0, -40.0],
                   help="log-score a word outside the vocabulary pays (a spelling no word starts with pays at once)")
    p.add_argument("--background-arpa", help="general-English ARPA model to interpolate with (bigram level used)")
    p.add_argument("--interpolations", type=float, nargs="+", default=[0.3, 0.5],
                   help="weights of the corpus bigram against the background (with --background-arpa)")
    p.add_argument("--background-bigrams", type=int, default=600_000,
                   help="keep the background's N most frequent pairs (0: all); ~12 bytes each in the set")
    p.add_argument("--order", type=int, choices=[2, 3], default=2,
                   help="3 adds a trigram level (from the text and the background's trigrams, if it has any)")
    p.add_argument("--background-trigrams", type=int, default=0,
                   help="with --order 3: keep the background's N most frequent triples (0: all); ~12 bytes each")
    p.add_argument("--text", nargs="+", default=[],
                   help="text-only files (one sentence a line) added to the LM's training transcripts; lines "
                        "holding a validation or test transcript are dropped")
    p.add_argument("--beam-width", type=int, default=32)
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0],
                   help="softmax temperatures of the head's output in the search (above 1 flattens it)")
    p.add_argument("--lookahead", action=argparse.BooleanOptionalAction, default=True,
                   help="score partial words by the best word they can become (LM look-ahead)")
    p.add_argument("--keep-lm", action="store_true",
                   help="keep the set's LM tensors and re-tune only alpha, beta, the unknown-word penalty, "
                        "temperature, beam width and look-ahead")
    p.add_argument("--lm-from", metavar="SET",
                   help="with --keep-lm: keep this other set's LM (same vocabulary), e.g. for a set trained on "
                        "a GPU machine that came back without its LM")
    p.add_argument("--valid-data", nargs="+", default=[], metavar="NAME=MANIFEST[:SPLIT]",
                   help="more validation speech beside the corpus' valid split (split 'valid' unless given), e.g. "
                        "natural voices: the weights are chosen by the mean of the sources' criteria. Rows "
                        "reserved for final figures (test speakers, test suites) are refused")
    p.add_argument("--select", choices=["cer", "wer", "mean"], default="mean",
                   help="validation criterion for alpha/beta (CER alone can buy characters with words)")
    p.add_argument("--max-clips", type=int, default=0, help="score the first N clips of each split only")
    p.add_argument("--device", default="cpu")
    return p


def validation_sources(specs: list[str], max_clips: int) -> dict[str, list]:
    """``NAME=MANIFEST[:SPLIT]`` -> that split's rows, each checked by the choice guard."""
    sources: dict[str, list] = {}
    for spec in specs:
        name, sep, where = spec.partition("=")
        if not sep or not name or name in ("valid", "test") or name in sources:
            raise SystemExit(f"--valid-data {spec!r}: give NAME=MANIFEST[:SPLIT] with a new name")
        manifest, _, split = where.rpartition(":") if where.endswith((":train", ":valid", ":test")) else (where, "", "")
        rows = filter_split(read_manifest(manifest), split or "valid")[: max_clips or None]
        if not rows:
            raise SystemExit(f"--valid-data {spec!r}: no {split or 'valid'} rows in {manifest}")
        try:
            check_choice_rows(rows, where=f"--valid-data {name}", manifest=manifest)
        except HeldOutDataError as error:
            raise SystemExit(str(error)) from None
        sources[name] = rows
    return sources


def kept_language_model(args: argparse.Namespace, adapter_set: AdapterSet) -> WordBigramLM | None:
    """With ``--keep-lm``: the LM to re-tune (the set's own, or ``--lm-from``'s)."""
    kept = adapter_set.language_model
    if args.lm_from:
        donor = AdapterSet.load(args.lm_from)
        if donor.config.vocab != adapter_set.config.vocab:
            raise SystemExit(f"{args.lm_from} spells with another vocabulary than {args.adapter_set}")
        kept = donor.language_model
    if args.keep_lm and kept is None:
        raise SystemExit(f"{args.lm_from or args.adapter_set} has no language model to keep")
    return kept


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.keep_lm and args.text:
        raise SystemExit("--text builds a new LM; --keep-lm keeps the old one")
    if args.lm_from and not args.keep_lm:
        raise SystemExit("--lm-from keeps another set's LM: add --keep-lm")
    adapter_set = AdapterSet.load(args.adapter_set, device=args.device)
    if not get_task(adapter_set.config.task).supports_language_model:
        raise SystemExit(f"{args.adapter_set} is a {adapter_set.config.task} set: its task decodes no text with an LM")
    rows = read_manifest(Path(args.corpus) / f"{adapter_set.config.task}.jsonl")
    splits = {s: filter_split(rows, s)[: args.max_clips or None] for s in ("train", "valid", "test")}
    extra_valid = validation_sources(args.valid_data, args.max_clips)
    vocab = adapter_set.config.vocab or []
    general = None
    if args.general_words and not args.keep_lm:
        general = general_frequencies(args.general_words, "".join(vocab[1:]))

    model = MultiAdapterModel(load_backbone(args.backbone, device=args.device))
    model.add_adapter_set(KEY, adapter_set)
    clips = {s: clip_log_probs(model, splits[s]) for s in ("valid", "test")}
    clips |= {name: clip_log_probs(model, source) for name, source in extra_valid.items()}
    kept = kept_language_model(args, adapter_set)
    adapter_set.attach_language_model(None)
    report: dict[str, object] = {"greedy": {s: score(adapter_set, clips[s]) for s in clips}}
    texts = [r.text for r in filter_split(rows, "train") if r.text]
    if args.text:
        held_out = {r.text for s in ("valid", "test") for r in filter_split(rows, s) if r.text}
        held_out |= {r.text for source in extra_valid.values() for r in source if r.text}
        extra, dropped = text_lines(args.text, held_out)
        texts += extra
        print(json.dumps({"extra_text_sentences": len(extra), "dropped_holding_held_out": dropped}), flush=True)

    background = None
    if args.background_arpa and not args.keep_lm:
        background = read_arpa(args.background_arpa, max_order=args.order).restricted("".join(vocab[1:]))

    def language_models():
        """(interpolation weight, LM) per LM to tune: only the fusion weights change within one."""
        if args.keep_lm:
            yield None, kept
            return
        for weight in args.interpolations if background is not None else [1.0]:
            yield weight, WordBigramLM.build(texts, general, background=background, interpolation=weight,
                                             max_background_bigrams=args.background_bigrams, order=args.order,
                                             max_background_trigrams=args.background_trigrams)

    choice = tune(args, adapter_set, language_models(), {s: clips[s] for s in ("valid", *extra_valid)})
    lm, interpolation = choice.pop("lm"), choice.pop("interpolation")
    adapter_set.attach_language_model(lm)
    report["lm"] = {"valid": choice["sources"]["valid"], "test": score(adapter_set, clips["test"]),
                    **{k: choice[k] for k in ("alpha", "beta", "unk_score_offset", "temperature")},
                    "beam_width": args.beam_width, "lookahead": args.lookahead,
                    "words": lm.config.num_words, "bigrams": lm.config.num_bigrams,
                    "trigrams": lm.config.num_trigrams, "kept": args.keep_lm,
                    "background": args.background_arpa if background else None,
                    "interpolation": interpolation if background else None,
                    "extra_text": [Path(t).name for t in args.text]}
    metrics = adapter_set.config.metrics
    metrics["greedy"] = report["greedy"]
    for split in ("valid", "test"):  # a soup records none of its own yet: these are its first
        metrics.setdefault(split, {}).update(report["lm"][split])  # type: ignore[index]
    if extra_valid:
        report["lm"]["chosen_on"] = metrics["lm_chosen_on"] = {  # type: ignore[index]
            "select": args.select, "sources": choice["sources"],
            "manifests": {name: spec.split("=", 1)[1] for name, spec in zip(extra_valid, args.valid_data, strict=True)}}
    adapter_set.save(args.out or args.adapter_set)
    print(json.dumps(report, indent=2))
    return 0


def tune(args: argparse.Namespace, adapter_set: AdapterSet, language_models, valid: dict[str, list]) -> dict:
    """Every (LM, alpha, beta, unknown-word penalty, temperature) scored on each validation source; the
    setting with the lowest mean criterion over the sources wins (each source weighs the same)."""
    def criterion(metrics: dict[str, float]) -> float:
        return (metrics["cer"] + metrics["wer"]) / 2 if args.select == "mean" else metrics[args.select]

    best: dict | None = None
    for interpolation, lm in language_models:
        for alpha, beta, unk, temperature in itertools.product(args.alphas, args.betas, args.unk_offsets,
                                                               args.temperatures):
            lm.config = dataclasses.replace(lm.config, alpha=alpha, beta=beta, unk_score_offset=unk,  # re-validated
                                            beam_width=args.beam_width, lookahead=args.lookahead,
                                            temperature=temperature)
            adapter_set.attach_language_model(lm)  # a fresh decoder with these weights
            sources = {name: score(adapter_set, clips) for name, clips in valid.items()}
            mean = sum(criterion(m) for m in sources.values()) / len(sources)
            shown = " ".join(f"{name} CER {m['cer']:.4f} WER {m['wer']:.4f}" for name, m in sources.items())
            print(f"interpolation {interpolation} alpha {alpha} beta {beta} unk {unk} temperature {temperature}: "
                  f"{shown}" + (f" mean {args.select} {mean:.4f}" if len(sources) > 1 else ""), flush=True)
            if best is None or mean < best["mean"]:
                best = {"mean": mean, "sources": sources, "alpha": alpha, "beta": beta, "unk_score_offset": unk,
                        "temperature": temperature, "interpolation": interpolation, "lm": lm,
                        "config": lm.config}
    assert best is not None
    best["lm"].config = best.pop("config")
    return best


if __name__ == "__main__":
    raise SystemExit(main())
