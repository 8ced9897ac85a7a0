"""Train an intent set's text branch and attach it: ``python -m training.intent_text.train``.

    python -m training.intent_text.train --intent adapters_store/intent-default \
        --asr adapters_store/asr-default --corpus data/corpus --paraphrases data/intent-para \
        --transcripts data/candidates/intent-text/transcripts.jsonl data/candidates/intent-text/transcripts-lm.jsonl \
        --acoustic data/candidates/intent-text/acoustic.jsonl --out data/candidates/intent-text/set

Reads the gold training phrasings and the ASR transcripts of the training clips (``transcripts``), fits
the classifier for each setting of a small grid, and scores each setting's text logits fused with the
intent set's acoustic logits (``acoustic``: cached pass) on the validation clips of each source; the
setting and the fusion weight with the best mean validation accuracy (then the best mean
log-likelihood) are kept. No test clip and no held-out phrasing is read.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from elp import AdapterSet
from elp.heads.pooled import label_incidence
from elp.text_intent.branch import SentencePart, attach_text_branch, fuse_log_probs
from elp.text_intent.sentence_encoder import PieceTokenizer, SentenceEncoder
from training.data.manifest import filter_split, read_manifest
from training.intent_text.fit import FitSettings, TextExample, fit, fit_sentence_scorer, text_logits
from training.intent_text.lexicon import WordNetLexicon, stored_lexicon
from training.suites.guard import held_out_reason

TEXT_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)


def read_jsonl(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def merged_rows(files: list[list[dict]]) -> list[dict]:
    """Rows of several transcript files joined per clip (source, id): one row with every field."""
    merged: dict[tuple[str, str], dict] = {}
    for rows in files:
        for row in rows:
            merged.setdefault((row["source"], row["id"]), {}).update(row)
    return list(merged.values())


def training_examples(manifests: list[str], transcripts: list[dict], use_transcripts: bool,
                      fields: tuple[str, ...] = ("asr",)) -> list[TextExample]:
    """Gold training phrasings of each manifest and (optionally) the ASR transcripts of training clips
    (each of ``fields``: best path, beam search); rows the held-out guard refuses are left out."""
    examples = []
    for manifest in manifests:
        for row in filter_split(read_manifest(manifest), "train"):
            if held_out_reason(row) is None and row.text:
                examples.append(TextExample(row.text, row.label))
    allowed_texts = {ex.text for ex in examples}
    if use_transcripts:
        examples += [TextExample(t[field], t["label"]) for field in fields for t in transcripts
                     if t["split"] == "train" and t["text"] in allowed_texts]
    return examples


def validation_sets(transcripts: list[dict], acoustic: list[dict], labels: list[str],
                    field: str = "asr") -> dict[str, dict]:
    """Per source: the valid clips' transcripts, acoustic logits and label indices."""
    logits = {(a["source"], a["id"]): a["acoustic"] for a in acoustic if a["split"] == "valid"}
    sets: dict[str, dict] = {}
    for t in transcripts:
        if t["split"] == "valid":
            entry = sets.setdefault(t["source"], {"texts": [], "acoustic": [], "targets": []})
            entry["texts"].append(t[field])
            entry["acoustic"].append(logits[(t["source"], t["id"])])
            entry["targets"].append(labels.index(t["label"]))
    return {source: {"texts": e["texts"], "acoustic": torch.tensor(e["acoustic"]),
                     "targets": torch.tensor(e["targets"])} for source, e in sets.items()}


def fused_scores(acoustic: torch.Tensor, text: torch.Tensor, weight: float,
                 targets: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean log-likelihood) of ``log_softmax(acoustic) + weight * log_softmax(text)``."""
    fused = fuse_log_probs(acoustic, text, weight)
    accuracy = float((fused.argmax(-1) == targets).float().mean())
    return accuracy, float(fused.gather(1, targets[:, None]).mean())


def score_setting(text: dict[str, torch.Tensor], valid: dict[str, dict]) -> list[dict]:
    """Per fusion weight: each source's accuracy (the text logits ``text`` fused with the acoustic ones)
    and the means used to choose."""
    results = []
    for weight in (*TEXT_WEIGHTS, float("inf")):
        per_source = {}
        for source, v in valid.items():
            if weight == float("inf"):
                per_source[source] = fused_scores(torch.zeros_like(v["acoustic"]), text[source], 1.0, v["targets"])
            else:
                per_source[source] = fused_scores(v["acoustic"], text[source], weight, v["targets"])
        results.append({"text_weight": weight, "accuracy": {s: round(a, 4) for s, (a, _) in per_source.items()},
                        "mean_accuracy": sum(a for a, _ in per_source.values()) / len(per_source),
                        "mean_loglik": sum(ll for _, ll in per_source.values()) / len(per_source)})
    return results


@dataclass
class SentenceSide:
    """The sentence encoder's side of the grid: embeddings of every training and validation text (computed
    once), one linear layer fitted per L2 value, and the logits combined with the word features'."""

    encoder: SentenceEncoder
    pieces: list[str]
    scores: list[float]
    fitted: dict[float, tuple[torch.Tensor, torch.Tensor]]
    valid_embeddings: dict[str, torch.Tensor]
    incidence: torch.Tensor

    @classmethod
    def build(cls, folder: str, examples: list[TextExample], valid: dict[str, dict], labels: list[str],
              slot_names: list[str], l2_values: list[float]) -> SentenceSide:
        from elp.convert.sentence_encoder import convert

        encoder, pieces, scores = convert(Path(folder))
        tokenizer = PieceTokenizer(pieces, scores)
        texts = sorted({ex.text for ex in examples} | {t for v in valid.values() for t in v["texts"]})
        vectors = torch.cat([encoder.embed(tokenizer, texts[i:i + 512]) for i in range(0, len(texts), 512)])
        row = {text: i for i, text in enumerate(texts)}
        incidence = label_incidence(labels, slot_names)
        train = vectors[[row[ex.text] for ex in examples]]
        targets = torch.tensor([labels.index(ex.label) for ex in examples])
        fitted = {l2: fit_sentence_scorer(train, targets, incidence, l2) for l2 in l2_values}
        valid_embeddings = {source: vectors[[row[t] for t in v["texts"]]] for source, v in valid.items()}
        return cls(encoder, pieces, scores, fitted, valid_embeddings, incidence)

    def combined(self, words: dict[str, torch.Tensor], l2: float, weight: float) -> dict[str, torch.Tensor]:
        weights, bias = self.fitted[l2]
        return {source: logits.log_softmax(-1)
                + weight * ((self.valid_embeddings[source] @ weights + bias) @ self.incidence.T).log_softmax(-1)
                for source, logits in words.items()}

    def part(self, l2: float, weight: float) -> SentencePart:
        weights, bias = self.fitted[l2]
        return SentencePart(self.encoder, self.pieces, self.scores, weights, bias, weight)


def grid_search(args: argparse.Namespace, examples: list[TextExample], valid: dict[str, dict], labels: list[str],
                slot_names: list[str], sentence: SentenceSide | None) -> tuple[list[dict], tuple]:
    """Every setting of the grid scored on validation: (report, best = (key, entry, model, lexicon))."""
    options = [(l2, w) for l2 in args.sentence_l2 for w in args.sentence_weight] if sentence else [(None, 0.0)]
    report, best = [], None
    for senses, dropout, l2 in itertools.product(args.senses, args.feature_dropout, args.l2):
        lexicon = WordNetLexicon(senses)
        model = fit(examples, lexicon, labels, slot_names, FitSettings(senses=senses, feature_dropout=dropout, l2=l2))
        words = {source: text_logits(model, v["texts"], lexicon) for source, v in valid.items()}
        for sentence_l2, sentence_weight in options:
            text = words if sentence is None else sentence.combined(words, sentence_l2, sentence_weight)
            setting = {"senses": senses, "feature_dropout": dropout, "l2": l2}
            if sentence is not None:
                setting |= {"sentence_l2": sentence_l2, "sentence_weight": sentence_weight}
            for result in score_setting(text, valid):
                entry = {**setting, **result}
                report.append(entry)
                key = (round(entry["mean_accuracy"], 6), entry["mean_loglik"])
                if result["text_weight"] != float("inf") and (best is None or key > best[0]):
                    best = (key, entry, model, lexicon)
            top = max(report[-len(TEXT_WEIGHTS) - 1:-1], key=lambda e: e["mean_accuracy"])
            print(json.dumps({k: top[k] for k in (*setting, "text_weight", "accuracy")}
                             | {"text_only": report[-1]["accuracy"]}), flush=True)
    assert best is not None
    return report, best


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--intent", required=True)
    p.add_argument("--asr", required=True)
    p.add_argument("--corpus", required=True, help="its intent.jsonl train phrasings are training text")
    p.add_argument("--paraphrases", action="append", default=[], help="more folders whose train phrasings are")
    p.add_argument("--transcripts", required=True, nargs="+",
                   help="training.intent_text.transcripts --asr outputs (best path, --with-lm), merged by clip")
    p.add_argument("--acoustic", required=True, help="training.intent_text.transcripts --intent output")
    p.add_argument("--with-lm", action="store_true",
                   help="the transcripts are the ASR set's LM beam search (field asr_lm): the set then carries its LM")
    p.add_argument("--lm-from", metavar="SET",
                   help="with --with-lm: the branch copies this set's LM instead of --asr's (same vocabulary), e.g. "
                        "a domain-adapted LM (training.intent_text.domain_lm); the transcripts must be its decoding")
    p.add_argument("--senses", type=int, nargs="+", default=[0, 1, 3, 99])
    p.add_argument("--feature-dropout", type=float, nargs="+", default=[0.0, 0.3, 0.5])
    p.add_argument("--l2", type=float, nargs="+", default=[1e-5, 1e-4])
    p.add_argument("--no-transcripts", action="store_true", help="train on the gold phrasings only (ablation)")
    p.add_argument("--train-fields", nargs="+", choices=["asr", "asr_lm"],
                   help="which transcripts of the training clips to train on (default: the served kind)")
    p.add_argument("--sentence-encoder", metavar="DIR",
                   help="a sentence encoder's TF.js folder (python -m elp.convert.sentence_encoder fetch): a linear "
                        "layer over its embedding of the transcript scores intents beside the word features")
    p.add_argument("--sentence-l2", type=float, nargs="+", default=[1e-3, 1e-2])
    p.add_argument("--sentence-weight", type=float, nargs="+", default=[1.0, 3.0],
                   help="the sentence log-probabilities' weight beside the word features' (grid)")
    p.add_argument("--out", help="write the chosen set here")
    p.add_argument("--report", help="write every setting's validation scores here (JSON)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    intent, asr = AdapterSet.load(args.intent), AdapterSet.load(args.asr)
    if args.lm_from:
        if not args.with_lm:
            raise SystemExit("--lm-from gives the branch another LM: add --with-lm")
        donor = AdapterSet.load(args.lm_from)
        if donor.language_model is None or donor.config.vocab != asr.config.vocab:
            raise SystemExit(f"{args.lm_from} carries no LM over {args.asr}'s vocabulary")
        asr.attach_language_model(donor.language_model)
    labels, slot_names = intent.config.labels or [], intent.config.slot_names or []
    transcripts = merged_rows([read_jsonl(path) for path in args.transcripts])
    manifests = [str(Path(f) / "intent.jsonl") for f in (args.corpus, *args.paraphrases)]
    field = "asr_lm" if args.with_lm else "asr"
    fields = tuple(args.train_fields or [field])
    examples = training_examples(manifests, transcripts, not args.no_transcripts, fields)
    valid = validation_sets(transcripts, read_jsonl(args.acoustic), labels, field)
    print(json.dumps({"training_examples": len(examples), "valid": {s: len(v["texts"]) for s, v in valid.items()}}))
    sentence = SentenceSide.build(args.sentence_encoder, examples, valid, labels, slot_names, args.sentence_l2) \
        if args.sentence_encoder else None
    report, best = grid_search(args, examples, valid, labels, slot_names, sentence)
    _, chosen, model, lexicon = best
    print(json.dumps({"chosen": chosen}), flush=True)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1, default=str))
    if args.out:
        stored = stored_lexicon(chosen["senses"], model.index()) if chosen["senses"] else {}
        part = sentence.part(chosen["sentence_l2"], chosen["sentence_weight"]) if sentence else None
        attach_text_branch(intent, asr, model.features, stored, model.slot_weights, model.slot_bias,
                           chosen["text_weight"], source=Path(args.asr).name, with_language_model=args.with_lm,
                           sentence=part)
        record = {k: chosen[k] for k in ("senses", "feature_dropout", "l2", "text_weight", "accuracy",
                                         "sentence_l2", "sentence_weight") if k in chosen}
        if part is not None:
            record["sentence_encoder"] = part.encoder.config.source
        record["transcripts"] = "asr beam search under its LM" if args.with_lm else "asr best path"
        if args.lm_from:
            record["transcripts"] = f"asr beam search under the LM of {args.lm_from}"
            record["language_model"] = donor.config.training.get("language_model", {})
        record |= {"training_examples": len(examples), "trained_on": ["gold phrasings", *fields],
                   "chosen_by": "mean validation accuracy of the valid sources"}
        intent.config.training = {**intent.config.training, "text_branch": record}
        intent.save(args.out)
        print(json.dumps({"saved": args.out, "features": len(model.features), "lexicon_terms": len(stored)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
