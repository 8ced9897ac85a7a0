"""A domain-adapted LM for an intent set's text branch: ``python -m training.intent_text.domain_lm``.

The text branch decodes the ASR set's CTC posteriors under its *own* copy of an LM, so it need not be
``/asr``'s general-English bigram: this builds the ASR set's LM interpolated with a word bigram of the
intent training phrasings (``WordBigramLM.build`` with the ASR LM as its background model,
``p = lam * p_domain + (1 - lam) * p_asr``), and chooses ``lam``, alpha and beta on the validation clips
of the refit's cached encoder pass by the fused intent accuracy (then log-likelihood) that the intent
set's stored classifier and acoustic logits give. The domain text is the train split of each
``--text-from`` folder's ``intent.jsonl``; a row the held-out guard refuses, and a sentence that holds a
validation or test sentence of any folder read, is dropped. No test clip is decoded.

    python -m training.intent_text.domain_lm --asr adapters_store/asr-default \\
        --intent adapters_store/intent-default --cache-dir data/cache/intent-para \\
        --corpus data/corpus --extra-corpus data/intent-para-50 --text-from data/corpus data/intent-para \\
        --acoustic data/candidates/intent-text/acoustic.jsonl --report grid.json --out asr-domain-lm

``--out`` saves a copy of the ASR set carrying the chosen LM (``transcripts --asr OUT --with-lm`` and
``train --lm-from OUT`` read it).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from elp import AdapterSet
from elp.decoding.arpa import ArpaModel
from elp.decoding.bigram import WordBigramLM
from elp.tasks.asr import CTCTranscriber
from training.corpus.text import normalise
from training.data.manifest import filter_split, read_manifest
from training.intent_text.train import TEXT_WEIGHTS, fused_scores, read_jsonl
from training.intent_text.transcripts import cache_file_for, cached_blocks, ctc_log_probs
from training.metrics import wer
from training.suites.guard import held_out_reason


def lm_as_arpa(lm: WordBigramLM) -> ArpaModel:
    """A stored LM as ARPA levels (exact: its unigram, back-off, bigram and, where it has one, trigram tables), so
    that it can be the background another LM is interpolated with."""
    words = lm.vocabulary()
    table = lm.unigram_log10.double().cpu().numpy()
    unigrams = {w: (float(table[i, 0]), float(table[i, 1])) for i, w in enumerate(words)}
    pairs = lm.bigram_index.cpu().numpy().tolist()
    values = lm.bigram_log10.double().cpu().numpy().tolist()
    bigrams = {(words[v], words[w]): p for (v, w), p in zip(pairs, values, strict=True)}
    keys, backoffs, starts, trigram_words, trigram_values = lm.trigram_arrays()
    size = len(words)
    histories = [(words[k // size], words[k % size]) for k in keys.tolist()]
    rows = np.repeat(np.arange(len(keys)), np.diff(starts)).tolist()
    trigrams = {(*histories[r], words[w]): float(p)
                for r, w, p in zip(rows, trigram_words.tolist(), trigram_values.tolist(), strict=True)}
    return ArpaModel(unigrams, bigrams, {1: len(unigrams), 2: len(bigrams), 3: len(trigrams)},
                     dict(zip(histories, backoffs.tolist(), strict=True)), trigrams)


def domain_sentences(folders: list[str], alphabet: str) -> tuple[list[str], dict[str, int]]:
    """Distinct normalised train-split sentences of each folder's ``intent.jsonl``, minus rows the
    held-out guard refuses and sentences that hold (as whole words) a valid or test sentence of any
    folder; returns them and the counts dropped per reason."""
    rows = [row for folder in folders for row in read_manifest(Path(folder) / "intent.jsonl")]
    reserved = {normalise(r.text) for r in rows if r.split in ("valid", "test") and r.text}
    needles = [f" {t} " for t in reserved if t]
    allowed = set(alphabet)
    kept: dict[str, None] = {}
    dropped = {"held_out": 0, "holds_valid_or_test": 0, "outside_alphabet": 0}
    for row in filter_split(rows, "train"):
        if not row.text:
            continue
        if held_out_reason(row) is not None:
            dropped["held_out"] += 1
            continue
        line = normalise(row.text)
        if any(needle in f" {line} " for needle in needles):
            dropped["holds_valid_or_test"] += 1
        elif not set(line) <= allowed:
            dropped["outside_alphabet"] += 1
        else:
            kept.setdefault(line)
    return list(kept), dropped


def validation_clips(asr: AdapterSet, cache_dir: str, corpus: str, extra: list[str]) -> list[dict]:
    """Every valid clip of the cached blocks: source, id, label, reference text, CTC log-probs."""
    clips = []
    for source, block in zip([corpus, *extra], cached_blocks(corpus, extra), strict=True):
        file = cache_file_for(cache_dir, len(block))
        indices = [i for i, row in enumerate(block) if row.split == "valid"]
        for i, log_probs in zip(indices, ctc_log_probs(asr, file, indices), strict=True):
            row = block[i]
            clips.append({"source": source, "id": row.id, "label": row.label, "text": normalise(row.text or ""),
                          "log_probs": log_probs})
    return clips


def score_transcripts(clips: list[dict], transcripts: list[str], intent: AdapterSet,
                      acoustic: dict[tuple[str, str], list[float]]) -> dict:
    """Fused accuracy / log-likelihood per source at each fusion weight (the best kept, as
    ``training.intent_text.train`` chooses it), text-only accuracy and WER per source."""
    labels = intent.config.labels or []
    classifier = intent.text_branch.classifier()
    sources = sorted({c["source"] for c in clips})
    per_source = {}
    for source in sources:
        at = [i for i, c in enumerate(clips) if c["source"] == source]
        text = torch.stack([classifier.logits(transcripts[i]) for i in at])
        logits = torch.tensor([acoustic[(source, clips[i]["id"])] for i in at])
        targets = torch.tensor([labels.index(clips[i]["label"]) for i in at])
        per_source[source] = {"text": text, "acoustic": logits, "targets": targets,
                              "wer": wer([clips[i]["text"] for i in at], [transcripts[i] for i in at]),
                              "text_only": float((text.argmax(-1) == targets).float().mean())}
    best = None
    for weight in TEXT_WEIGHTS:
        scores = {s: fused_scores(v["acoustic"], v["text"], weight, v["targets"]) for s, v in per_source.items()}
        key = (round(sum(a for a, _ in scores.values()) / len(scores), 6),
               sum(ll for _, ll in scores.values()) / len(scores))
        if best is None or key > best[0]:
            best = (key, weight, scores)
    assert best is not None
    (mean_accuracy, mean_loglik), weight, scores = best
    return {"text_weight": weight, "mean_accuracy": mean_accuracy, "mean_loglik": round(mean_loglik, 5),
            "accuracy": {s: round(a, 4) for s, (a, _) in scores.items()},
            "text_only": {s: round(v["text_only"], 4) for s, v in per_source.items()},
            "wer": {s: round(v["wer"], 4) for s, v in per_source.items()}}


def decode_all(clips: list[dict], vocab: list[str], lm: WordBigramLM) -> tuple[list[str], float]:
    """Transcripts under ``lm`` with the served decoder (``CTCTranscriber``), and seconds per clip."""
    transcriber = CTCTranscriber(vocab, lm)
    start = time.perf_counter()
    texts = [transcriber(c["log_probs"])["text"] for c in clips]
    return texts, (time.perf_counter() - start) / max(len(clips), 1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--asr", required=True, help="the ASR set whose L-adapters, CTC head and LM the branch copies")
    p.add_argument("--intent", required=True, help="an intent set with a text branch: its classifier scores")
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--extra-corpus", action="append", default=[])
    p.add_argument("--text-from", nargs="+", required=True,
                   help="folders whose intent.jsonl train sentences are the domain text")
    p.add_argument("--acoustic", required=True, help="training.intent_text.transcripts --intent output")
    p.add_argument("--interpolations", type=float, nargs="+", default=[0.2, 0.4, 0.6, 0.8],
                   help="weights of the domain bigram against the ASR set's LM")
    p.add_argument("--alphas", type=float, nargs="+", help="LM weights (default: the ASR set's)")
    p.add_argument("--betas", type=float, nargs="+", help="word rewards (default: the ASR set's)")
    p.add_argument("--report", help="every setting's validation scores (JSON)")
    p.add_argument("--out", help="save a copy of the ASR set carrying the chosen LM here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    asr = AdapterSet.load(args.asr).eval()
    intent = AdapterSet.load(args.intent).eval()
    base = asr.language_model
    if base is None or intent.text_branch is None:
        raise SystemExit("--asr must carry an LM and --intent a text branch")
    vocab = list(asr.config.vocab or [])
    sentences, dropped = domain_sentences(args.text_from, "".join(vocab[1:]))
    print(json.dumps({"domain_sentences": len(sentences), "dropped": dropped}), flush=True)
    clips = validation_clips(asr, args.cache_dir, args.corpus, args.extra_corpus)
    acoustic = {(a["source"], a["id"]): a["acoustic"] for a in read_jsonl(args.acoustic) if a["split"] == "valid"}
    texts, seconds = decode_all(clips, vocab, base)
    report = [{"lm": "asr", **score_transcripts(clips, texts, intent, acoustic), "decode_ms": round(1000 * seconds, 1)}]
    print(json.dumps(report[-1]), flush=True)
    background = lm_as_arpa(base)
    best = None
    for interpolation in args.interpolations:
        lm = WordBigramLM.build(sentences, background=background, interpolation=interpolation,
                                order=3 if base.config.num_trigrams else 2)
        for alpha, beta in itertools.product(args.alphas or [base.config.alpha], args.betas or [base.config.beta]):
            sizes = {k: getattr(lm.config, k) for k in ("num_words", "num_word_bytes", "num_bigrams", "num_trigrams",
                                                        "num_trigram_histories")}
            lm.config = dataclasses.replace(base.config, **sizes, alpha=alpha, beta=beta)
            texts, seconds = decode_all(clips, vocab, lm)
            entry = {"lm": "domain", "interpolation": interpolation, "alpha": alpha, "beta": beta,
                     **score_transcripts(clips, texts, intent, acoustic), "decode_ms": round(1000 * seconds, 1)}
            report.append(entry)
            print(json.dumps(entry), flush=True)
            key = (entry["mean_accuracy"], entry["mean_loglik"])
            if best is None or key > best[0]:
                best = (key, entry, lm, dataclasses.replace(lm.config))
    assert best is not None
    _, chosen, lm, config = best
    print(json.dumps({"chosen": chosen}), flush=True)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps({"domain_sentences": len(sentences), "dropped": dropped,
                                                 "settings": report}, indent=1))
    if args.out:
        lm.config = config
        asr.attach_language_model(lm)
        asr.config.training = {**asr.config.training, "language_model": {
            "kind": "intent-domain bigram interpolated with the ASR set's LM",
            "text_from": args.text_from, "domain_sentences": len(sentences),
            **{k: chosen[k] for k in ("interpolation", "alpha", "beta")},
            "chosen_by": "mean fused intent accuracy of the valid sources (then log-likelihood)"}}
        asr.config.metrics = {}  # the ASR set's figures were measured with its own LM, not this one
        asr.save(args.out)
        print(json.dumps({"saved": args.out, "words": config.num_words, "bigrams": config.num_bigrams}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

