"""An intent set from example sentences alone: no audio, no GPU, seconds on a CPU.

    python -m training.intent_text.from_examples my_intents.json --asr adapters_store/asr-default \\
        --out adapters_store/intent-home [--sentence-encoder data/sentence-encoder]

``my_intents.json`` maps each intent to sentences a user might say: ``{"order_pizza": ["I'd like a pizza",
"get me a large pepperoni"], "cancel_order": [...]}``. The set reads what the ASR set hears (a copy of its
E-, P- and L-adapters, CTC head and LM: the same transcript as ``/asr``) and scores it with a classifier fitted
on the examples: word, word-pair and character-trigram features with WordNet senses (so "lamp" meets "light"),
and with ``--sentence-encoder`` a sentence embedding trained on broad English beside them. Its acoustic head is
zero (it has heard no audio), so the answer is the text's alone. Labels shaped ``action_object_location`` with
``--slots action object location`` answer slots too.

The defaults (senses, dropout, L2, the sentence weight) were chosen on the project's intent validation clips
(adapters_store/intent-default's card, twenty-fourth session); there is nothing here to choose them on.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from elp import AdapterSet
from elp.config import config_for_method
from elp.heads.pooled import label_incidence
from elp.text_intent.branch import SentencePart, attach_text_branch
from training.intent_text.fit import FitSettings, TextExample, fit, fit_sentence_scorer
from training.intent_text.lexicon import WordNetLexicon, stored_lexicon
from training.refit_start import transplant

LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}")
SETTINGS = FitSettings(senses=3, feature_dropout=0.3, l2=1e-4)
SENTENCE_L2, SENTENCE_WEIGHT = 1e-4, 0.5


def read_examples(path: Path, slot_names: list[str] | None) -> tuple[list[str], list[TextExample]]:
    """(labels, examples) of an examples file; malformed files are refused with the reason."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or len(data) < 2:
        raise SystemExit(f"{path}: expected an object mapping at least two intents to lists of sentences")
    labels, examples = [], []
    for label, sentences in data.items():
        if not LABEL.fullmatch(label):
            raise SystemExit(f"{path}: intent {label!r} must be 1-64 letters, digits, spaces, '_', '.', '-'")
        if slot_names and len(label.split("_")) != len(slot_names):
            raise SystemExit(f"{path}: intent {label!r} does not split into the slots {slot_names}")
        listed = sentences if isinstance(sentences, list) else []
        texts = [s.strip() for s in listed if isinstance(s, str) and s.strip()]
        if not texts:
            raise SystemExit(f"{path}: intent {label!r} needs a list of at least one sentence")
        labels.append(label)
        examples += [TextExample(text, label) for text in texts]
    return labels, examples


def empty_intent_set(asr: AdapterSet, labels: list[str], slot_names: list[str] | None) -> AdapterSet:
    """An intent set on ``asr``'s E-, P- and L-adapters whose head answers nothing (all weights zero)."""
    config = config_for_method("elp", "intent", dict(asr.config.backbone), labels=labels, slot_names=slot_names)
    config.head.factorized_slots = False
    intent = transplant(AdapterSet(config), asr)
    with torch.no_grad():
        for parameter in intent.head.parameters():
            parameter.zero_()
    return intent


def sentence_part(folder: str, examples: list[TextExample], labels: list[str],
                  slot_names: list[str] | None) -> SentencePart:
    from elp.convert.sentence_encoder import convert
    from elp.text_intent.sentence_encoder import PieceTokenizer

    encoder, pieces, scores = convert(Path(folder))
    embeddings = encoder.embed(PieceTokenizer(pieces, scores), [ex.text for ex in examples])
    targets = torch.tensor([labels.index(ex.label) for ex in examples])
    weights, bias = fit_sentence_scorer(embeddings, targets, label_incidence(labels, slot_names), SENTENCE_L2)
    return SentencePart(encoder, pieces, scores, weights, bias, SENTENCE_WEIGHT)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("examples", type=Path, help="JSON: intent -> list of example sentences")
    p.add_argument("--asr", required=True, help="the ASR set (with its LM) whose transcript the set reads")
    p.add_argument("--out", required=True)
    p.add_argument("--slots", nargs="+", metavar="NAME", help="the slot names of labels shaped a_b_c")
    p.add_argument("--sentence-encoder", metavar="DIR",
                   help="also score a sentence embedding (python -m elp.convert.sentence_encoder fetch)")
    p.add_argument("--description", help="the set's description")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    labels, examples = read_examples(args.examples, args.slots)
    asr = AdapterSet.load(args.asr)
    if asr.language_model is None:
        raise SystemExit(f"{args.asr} has no LM: the set decodes the transcript with the ASR set's beam search")
    intent = empty_intent_set(asr, labels, args.slots)
    lexicon = WordNetLexicon(SETTINGS.senses)
    model = fit(examples, lexicon, labels, args.slots or [], SETTINGS)
    part = sentence_part(args.sentence_encoder, examples, labels, args.slots) if args.sentence_encoder else None
    attach_text_branch(intent, asr, model.features, stored_lexicon(SETTINGS.senses, model.index()),
                       model.slot_weights, model.slot_bias, 1.0, source=Path(args.asr).name,
                       with_language_model=True, sentence=part)
    intent.config.description = args.description or (
        f"intent set built from {len(examples)} example sentences of {len(labels)} intents "
        f"(training.intent_text.from_examples; no audio): {Path(args.asr).name}'s transcript, scored by text")
    intent.config.training = {"from_examples": {
        "file": args.examples.name, "intents": len(labels), "sentences": len(examples),
        "senses": SETTINGS.senses, "feature_dropout": SETTINGS.feature_dropout, "l2": SETTINGS.l2,
        "sentence_encoder": part.encoder.config.source if part else None,
        "sentence_l2": SENTENCE_L2 if part else None, "sentence_weight": SENTENCE_WEIGHT if part else None}}
    intent.save(args.out)
    print(json.dumps({"saved": args.out, "intents": len(labels), "sentences": len(examples),
                      "features": len(model.features)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
