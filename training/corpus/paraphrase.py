"""A paraphrase family for the intent task: other verbs, WordNet synonyms, fillers, word order, hints.

The corpus' intent clips speak 10 fixed phrasings per intent (:func:`training.corpus.text.intent_phrasings`);
a set trained on 7 of them learns those wordings and misses others ("fire up the kitchen lights",
"um it's freezing in the bedroom"). This module writes many more from a small grammar per intent
group: *frames* (a construction: "{V} on {O}{Lo}", "in the {loc} {V} {O} on", "it's {cold} in the
{loc}"), verb and object wordings (hand-written plus WordNet synonyms of one sense each, odd ones
dropped), and politeness / hesitation *fillers* ("um could you", "... thanks"). The location and
object words of the label stay in every sentence (kitchen, bedroom, washroom; lamp, newspaper, ...),
so the slots stay recoverable from the words.

Validation is held out **by template**, not by sentence: a seeded quarter of each group's frames,
of its verbs and of the fillers occur only in validation sentences; training sentences use the rest.
No sentence equals (after its fillers are stripped) a phrasing of the corpus' valid or test splits,
so the corpus' own held-out phrasings stay held out. Everything is seeded and sorted: the same seed
gives the same sentences, in the same order, on any machine with the same WordNet files.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass

import numpy as np

from training.corpus import wordnet
from training.corpus.paraphrase_grammar import FILLER_PREFIXES, FILLER_SUFFIXES, GROUPS, INTERJECTIONS, Group
from training.corpus.text import LANGUAGES, LOCATIONS, normalise, split_phrasings

# Frames that open with a verb take a request before them ("could you switch on ..."); others
# ("i want the lamp on", "it's freezing in here") take an interjection at most.
REQUEST_STARTS = ("{V", "{P", "make ", "speak ", "talk ", "set ", "pick ", "go and ", "answer ")

#: the intent group about switching the UI language (a phrasing group, not the language-ID task)
LANGUAGE_GROUP = "language"


@dataclass(frozen=True)
class Paraphrase:
    """One sentence and where it came from (the frame is the unit held out)."""

    text: str
    intent: str
    group: str
    frame: str  # "<group>/<frame id>"
    family: str  # imperative | reorder | indirect (the frame's kind)
    verb: str
    filler: str  # "prefix|suffix", "|" when none
    request: bool = False  # starts with a verb, so "could you ..." may precede it


def intent_slots(intent: str) -> tuple[str, str, str]:
    """(action, object, location) of an ``action_object_location`` label."""
    action, obj, location = intent.split("_")
    return action, obj, location


def group_vocabulary(group: Group) -> dict[str, list[str]]:
    """The group's word lists with their WordNet synonyms added (odd lemmas dropped), sorted, unique."""
    out: dict[str, list[str]] = {}
    for name, words in group.words.items():
        pool = set(words)
        for lemma, pos, sense in group.wordnet.get(name, ()):
            found = (wordnet.similar_adjectives(lemma, sense) + wordnet.synonyms(lemma, "adj", sense)
                     if pos == "adj-similar" else wordnet.synonyms(lemma, pos, sense))
            pool |= {w.replace("-", " ") for w in found if w not in group.odd}
        out[name] = sorted(pool)
    return out


def _location_values(location: str) -> dict[str, list[str]]:
    """Location placeholders: {L} needs a location (absent for "none"), {Lo} may be empty, {M} is a modifier."""
    if location == "none":
        return {"Lo": ["", " in here", " in this room"]}
    return {"L": [f"in the {location}", f"in my {location}", f"in the {location} please"][:2],
            "Lo": [f" in the {location}", f" in my {location}"], "M": [location]}


def _fill(frame: str, values: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Every (sentence, verb) from ``frame`` with its placeholders filled from ``values``; [] when one
    it needs is missing (a location frame for a "none" intent)."""
    names = sorted(set(re.findall(r"{(\w+)}", frame)))
    if any(name not in values for name in names):
        return []
    out = []
    for combo in itertools.product(*(values[name] for name in names)):
        chosen = dict(zip(names, combo, strict=True))
        out.append((frame.format(**chosen), chosen.get("V") or chosen.get("Vp", "")))
    return out


def _held_out(items: list[str], seed: int, tag: str, fraction: float = 0.25) -> set[str]:
    """A seeded ``fraction`` (at least one when there are three or more) of ``items``, by name."""
    if len(items) < 3:
        return set()
    digest = int.from_bytes(hashlib.sha256(f"{seed}/{tag}".encode()).digest()[:8], "little")
    order = np.random.default_rng(digest).permutation(len(items))
    count = max(1, round(fraction * len(items)))
    return {sorted(items)[i] for i in order[:count]}


def core(text: str) -> str:
    """A sentence without its fillers and politeness words: what decides whether two wordings are one."""
    words = normalise(text).split()
    drop = {"um", "uh", "er", "hey", "okay", "so", "please", "thanks", "thank", "you", "could", "can",
            "would", "will", "now", "just", "well", "oh", "right", "for", "me", "i'd", "like", "to"}
    return " ".join(w for w in words if w not in drop)


def protected_cores(seed: int = 0) -> set[str]:
    """Cores of the corpus' valid and test phrasings (seed ``seed``) and of the held-out evaluation family
    (training/suites/phrasings.py, written apart and never trained on): none of ours may equal one."""
    from training.suites.phrasings import held_out_set

    corpus = {core(p) for split in split_phrasings(seed).values() for name in ("valid", "test") for p in split[name]}
    return corpus | {core(p) for p in held_out_set()}


def _language_values(intent: str, vocabulary: dict[str, list[str]]) -> dict[str, list[str]]:
    """'change language_German_none' fills {LANG} with German; 'change language_none_none' has none."""
    target = intent.split("_")[1]
    values = dict(vocabulary)
    if target != "none":
        values["LANG"] = [target]
    return values


def group_sentences(group: Group, seed: int) -> list[Paraphrase]:
    """Every sentence of one group, each tagged with its frame, verb and filler."""
    vocabulary = group_vocabulary(group)
    out: list[Paraphrase] = []
    for intent in group.intents:
        if group.name == LANGUAGE_GROUP:
            values = _language_values(intent, vocabulary)
        else:
            _, obj, location = intent_slots(intent)
            values = dict(vocabulary) | _location_values(location)
            values |= {k: v for k, v in group.per_object.get(obj, {}).items()}
        frames = group.frames_for(intent)
        for frame_id, (family, frame) in sorted(frames.items()):
            for text, verb in _fill(frame, values):
                out.append(Paraphrase(normalise(text), intent, group.name, f"{group.name}/{frame_id}", family,
                                      verb, "|", family != "indirect" and frame.startswith(REQUEST_STARTS)))
    return out


def with_fillers(sentence: Paraphrase, prefix: str, suffix: str) -> Paraphrase:
    """The sentence with a filler before and/or after it (hints get interjections only)."""
    text = normalise(" ".join(part for part in (prefix, sentence.text, suffix) if part))
    return Paraphrase(text, sentence.intent, sentence.group, sentence.frame, sentence.family, sentence.verb,
                      f"{prefix}|{suffix}", sentence.request)


@dataclass(frozen=True)
class HeldOut:
    """What validation alone may use: frames, verbs and fillers chosen by the seed."""

    frames: frozenset[str]
    verbs: frozenset[str]
    fillers: frozenset[str]


def held_out(seed: int) -> HeldOut:
    """The seeded validation-only templates: a quarter of each group's frames and verbs, of the fillers."""
    frames: set[str] = set()
    verbs: set[str] = set()
    for group in GROUPS:
        frame_ids = sorted({f"{group.name}/{fid}" for intent in group.intents for fid in group.frames_for(intent)})
        frames |= _held_out(frame_ids, seed, f"frames/{group.name}")
        verbs |= {f"{group.name}/{v}" for v in _held_out(group_vocabulary(group).get("V", []), seed,
                                                          f"verbs/{group.name}")}
    fillers = _held_out([*FILLER_PREFIXES[1:], *FILLER_SUFFIXES[1:]], seed, "fillers")
    return HeldOut(frozenset(frames), frozenset(verbs), frozenset(fillers))


def _split_of(sentence: Paraphrase, held: HeldOut) -> str:
    unseen = sentence.frame in held.frames or f"{sentence.group}/{sentence.verb}" in held.verbs
    return "valid" if unseen else "train"


def paraphrase_family(seed: int, per_intent: dict[str, int] | None = None) -> dict[str, list[Paraphrase]]:
    """{"train": [...], "valid": [...]}: ``per_intent[split]`` sentences per intent (default 80 / 10),
    drawn evenly over frames, fillers added by the seed; valid sentences use a held-out frame or verb,
    train ones none of them and no held-out filler; none equals a corpus valid/test phrasing's core."""
    per_intent = per_intent or {"train": 80, "valid": 10}
    held = held_out(seed)
    protected = protected_cores(0) | protected_cores(seed)
    prefixes = {"train": [p for p in FILLER_PREFIXES if p not in held.fillers], "valid": list(FILLER_PREFIXES)}
    suffixes = {"train": [s for s in FILLER_SUFFIXES if s not in held.fillers], "valid": list(FILLER_SUFFIXES)}
    out: dict[str, list[Paraphrase]] = {"train": [], "valid": []}
    for group in GROUPS:
        by_intent: dict[tuple[str, str], list[Paraphrase]] = {}
        for sentence in group_sentences(group, seed):
            by_intent.setdefault((sentence.intent, _split_of(sentence, held)), []).append(sentence)
        for (intent, split), sentences in sorted(by_intent.items()):
            rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{seed}/{intent}/{split}".encode())
                                                       .digest()[:8], "little"))
            out[split] += _draw(sentences, per_intent[split], rng, prefixes[split], suffixes[split], protected)
    return {split: sorted(rows, key=lambda p: (p.intent, p.text)) for split, rows in out.items()}


def _draw(sentences: list[Paraphrase], count: int, rng: np.random.Generator, prefixes: list[str],
          suffixes: list[str], protected: set[str], rounds: int = 8) -> list[Paraphrase]:
    """``count`` distinct sentences drawn round-robin over frames (so no frame dominates), each given a
    filler two times in three (interjections only where no request fits); a frame with few wordings is
    drawn again with other fillers, at most ``rounds`` times."""
    frames: dict[str, list[Paraphrase]] = {}
    for s in sentences:
        frames.setdefault(s.frame, []).append(s)
    chosen: dict[str, Paraphrase] = {}
    for round_ in range(rounds):
        queues = {f: [items[i] for i in rng.permutation(len(items))] for f, items in sorted(frames.items())}
        while len(chosen) < count and any(queues.values()):
            for frame in sorted(queues):
                if not queues[frame] or len(chosen) >= count:
                    continue
                base = queues[frame].pop()
                if round_ > 0 or rng.random() < 2 / 3:
                    base = _add_filler(base, rng, prefixes, suffixes)
                if core(base.text) not in protected and base.text not in chosen:
                    chosen[base.text] = base
        if len(chosen) >= count:
            break
    return list(chosen.values())


def _add_filler(base: Paraphrase, rng: np.random.Generator, prefixes: list[str], suffixes: list[str]) -> Paraphrase:
    pool = prefixes if base.request else INTERJECTIONS
    prefix = pool[int(rng.integers(len(pool)))] if rng.random() < 0.7 else ""
    suffix = suffixes[int(rng.integers(len(suffixes)))] if base.family != "indirect" else ""
    return with_fillers(base, prefix, suffix)


def family_digest(family: dict[str, list[Paraphrase]]) -> str:
    """sha256 of every (split, intent, text): the family's identity in a manifest summary."""
    lines = [f"{split}\t{p.intent}\t{p.text}" for split in sorted(family) for p in family[split]]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


__all__ = ["LANGUAGES", "LOCATIONS", "HeldOut", "Paraphrase", "core", "family_digest", "held_out",
           "paraphrase_family", "protected_cores"]
