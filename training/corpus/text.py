"""Text side of the corpus: transcript normalisation, the sentence pool and the intent phrasings.

Transcripts are normalised to the CTC vocabulary (lower-case a-z, apostrophe, space) *before*
synthesis, so the synthesiser reads exactly the string stored as the label.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from elp.spoken_text import normalise, spell_number

FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Debian wordnet-base: the glosses' quoted usage examples are short modern sentences by many hands.
WORDNET_DIR = Path("/usr/share/wordnet")
# Fortune files that are mostly prose quotes (skip ascii art, code, song lyrics, riddles).
FORTUNE_FILES = (
    "fortunes", "wisdom", "literature", "people", "platitudes", "science", "education",
    "food", "humorists", "law", "love", "magic", "medicine", "miscellaneous", "news",
    "pets", "politics", "sports", "work", "goedel", "kids", "computers", "cookie",
)


def _fortune_sentences(min_words: int, max_words: int, max_chars: int = 90) -> list[str]:
    """Single sentences from the Debian fortune files, kept only if they read as plain prose."""
    out: list[str] = []
    for name in FORTUNE_FILES:
        path = FORTUNES_DIR / name
        if not path.is_file():
            continue
        raw = path.read_text(encoding="utf-8", errors="replace")
        for entry in raw.split("\n%\n"):
            if re.search(r"^\s*(--|[A-Z][a-z]+:)|\t|  {3}|[<>{}\[\]|\\=#*_@/~^]", entry, re.M):
                continue  # attributions, dialogues, code, tables
            body = " ".join(entry.split())
            for sent in re.split(r"(?<=[.!?])\s+", body):
                if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ,;:'\"\-.!?()]*[.!?]", sent):
                    continue
                if re.search(r"\b[A-Z]{2,}\b|\b[A-Z]\.|\(|\)|\d[A-Za-z]|[A-Za-z]\d", sent):
                    continue  # acronyms, initials and "4pm" are read inconsistently by the synthesisers
                norm = normalise(sent)
                words = norm.split()
                n = len(words)
                if sum(len(w) == 1 and w not in ("a", "i") for w in words) > 1 or \
                        sum(len(w) for w in words) < 3 * n:
                    continue  # "f u cn rd ths" style text
                if min_words <= n <= max_words and len(norm) <= max_chars:
                    out.append(norm)
    return out


def _plain_prose(sent: str) -> bool:
    """No acronyms, initials, "4pm"-style tokens, brackets or code: text every synthesiser reads alike."""
    return not re.search(r"\b[A-Z]{2,}\b|\b[A-Z]\.|\(|\)|\d[A-Za-z]|[A-Za-z]\d|[<>{}\[\]|\\=#*_@/~^;:]|--", sent)


def wordnet_sentences(min_words: int = 5, max_words: int = 14, max_chars: int = 100) -> list[str]:
    """Normalised, de-duplicated usage examples from WordNet's glosses (``"she was dazzled by the bright
    headlights"``), sorted; empty when wordnet-base is not installed. ~28,000 sentences with WordNet 3.0:
    eight times the fortune pool, and a modern, everyday vocabulary."""
    out: set[str] = set()
    for pos in ("noun", "verb", "adj", "adv"):
        path = WORDNET_DIR / f"data.{pos}"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue  # the licence header
            for example in re.findall(r'"([^"]+)"', line.split(" | ", 1)[1]):
                norm = normalise(example)
                words = norm.split()
                if _plain_prose(example) and min_words <= len(words) <= max_words and len(norm) <= max_chars \
                        and sum(len(w) for w in words) >= 3 * len(words):
                    out.add(norm)
    return sorted(out)


def lm_text_sentences(spoken: Iterable[str] = ()) -> list[str]:
    """Text-only material for the ASR language model, from the same sources as the clips: fortune
    sentences of every length (the clips speak 4-12 words, <= 90 characters) and every WordNet usage
    example, minus the ``spoken`` transcripts; sorted and de-duplicated. ``elp-add-lm --text`` drops
    any line holding a validation or test transcript before it counts a word."""
    text = set(_fortune_sentences(1, 80, max_chars=600)) | set(wordnet_sentences(1, 80, max_chars=600))
    return sorted(text - set(spoken))


_SUBJ = ("the old man", "my sister", "a young doctor", "the small dog", "our neighbour", "the teacher",
         "a tired farmer", "the quiet student", "her brother", "the pilot", "a busy nurse", "the baker",
         "the little girl", "his uncle", "the captain", "a stranger", "the gardener", "my friend",
         "the driver", "the singer", "a clever fox", "the children", "the new manager", "grandma")
_VERB = ("painted", "carried", "found", "lost", "cleaned", "opened", "borrowed", "sold", "fixed",
         "watched", "bought", "dropped", "hid", "washed", "measured", "followed", "repaired", "packed",
         "wrapped", "counted", "moved", "checked", "filled", "tasted")
_OBJ = ("a red wagon", "the heavy box", "two blue cups", "the silver key", "a wooden chair",
        "the broken clock", "three green apples", "an old map", "the paper kite", "a warm coat",
        "the brass bell", "a jar of honey", "the long rope", "a basket of eggs", "the yellow boat",
        "a pile of leaves", "the tall ladder", "a loaf of bread", "the iron gate", "a small lamp")
_PLACE = ("near the river", "in the garden", "behind the barn", "at the station", "before dinner",
          "after the storm", "on a cold morning", "under the bridge", "by the window", "in the market",
          "at the edge of town", "during the game", "late last night", "on the top shelf",
          "beside the lake", "in the dusty attic")


def _grammar_sentences(rng: np.random.Generator, n: int) -> list[str]:
    """Template sentences: a fallback when the fortune files are absent, and extra variety."""
    out = set()
    while len(out) < n:
        s = f"{_SUBJ[rng.integers(len(_SUBJ))]} {_VERB[rng.integers(len(_VERB))]} " \
            f"{_OBJ[rng.integers(len(_OBJ))]}"
        if rng.random() < 0.7:
            s += " " + _PLACE[rng.integers(len(_PLACE))]
        if rng.random() < 0.15:
            s += f" at {spell_number(int(rng.integers(1, 13)))} o'clock"
        out.add(s)
    return sorted(out)


def sentence_pool(seed: int, min_words: int = 4, max_words: int = 12, n_grammar: int = 900,
                  ) -> tuple[list[str], dict[str, object]]:
    """Deterministically shuffled, de-duplicated sentence pool and a description of its source."""
    rng = np.random.default_rng([seed, 11])
    fortunes = sorted(set(_fortune_sentences(min_words, max_words)))
    grammar = _grammar_sentences(rng, n_grammar)
    pool = sorted(t for t in set(fortunes) | set(grammar) if len(t.split()) <= max_words)
    order = rng.permutation(len(pool))
    pool = [pool[i] for i in order]
    digest = hashlib.sha256("\n".join(pool).encode()).hexdigest()
    info = {"fortune_sentences": len(fortunes), "grammar_sentences": len(grammar),
            "pool_size": len(pool), "pool_sha256": digest}
    return pool, info


# --- intents (Fluent-Speech-Commands-like) ---------------------------------------------------
LOCATIONS = ("kitchen", "bedroom", "washroom")
LANGUAGES = ("Chinese", "English", "German", "Korean")

_LIGHTS_ON_LOC = ("turn on the lights in the {loc}", "switch on the {loc} lights", "{loc} lights on",
                  "lights on in the {loc}", "turn the {loc} lights on", "switch the lights on in the {loc}",
                  "put the {loc} lights on", "could you turn on the {loc} lights",
                  "please switch on the lights in the {loc}", "light up the {loc}")
_LIGHTS_OFF_LOC = ("turn off the lights in the {loc}", "switch off the {loc} lights", "{loc} lights off",
                   "lights off in the {loc}", "turn the {loc} lights off",
                   "switch the lights off in the {loc}", "kill the lights in the {loc}",
                   "could you turn off the {loc} lights",
                   "please switch off the lights in the {loc}", "no more light in the {loc}")
_HEAT_UP_LOC = ("turn up the heat in the {loc}", "increase the temperature in the {loc}",
                "make the {loc} warmer", "heat up the {loc}", "{loc} heat up",
                "raise the heating in the {loc}", "it's too cold in the {loc}",
                "turn the heat up in the {loc}", "warm up the {loc} please", "more heat in the {loc}")
_HEAT_DOWN_LOC = ("turn down the heat in the {loc}", "decrease the temperature in the {loc}",
                  "make the {loc} cooler", "cool down the {loc}", "{loc} heat down",
                  "lower the heating in the {loc}", "it's too hot in the {loc}",
                  "turn the heat down in the {loc}", "reduce the heat in the {loc}", "less heat in the {loc}")
_BRING = ("bring me the {obj}", "get me my {obj}", "fetch the {obj}", "i need my {obj}",
          "could you bring my {obj}", "go get the {obj}", "bring the {obj} please", "{obj} please",
          "fetch me my {obj}", "i want my {obj}")
_LANG = ("change the language to {lang}", "switch to {lang}", "set the language to {lang}",
         "{lang} please", "use {lang}", "i want to use {lang}", "switch the language to {lang}",
         "language {lang}", "change language to {lang}", "i'd like {lang} please")

_FIXED: dict[str, tuple[str, ...]] = {
    "activate_lights_none": ("turn on the lights", "switch on the lights", "lights on", "turn the lights on",
                             "put the lights on", "i need some light", "it's too dark in here",
                             "could you turn on the lights please", "switch the lights on", "lights please"),
    "deactivate_lights_none": ("turn off the lights", "switch off the lights", "lights off",
                               "turn the lights off", "kill the lights", "it's too bright in here",
                               "could you turn off the lights please", "switch the lights off",
                               "put the lights out", "no lights please"),
    "activate_lamp_none": ("turn on the lamp", "switch on the lamp", "lamp on", "turn the lamp on",
                           "put the lamp on", "could you switch the lamp on", "switch the lamp on please",
                           "i need the lamp on", "light the lamp", "lamp on please"),
    "deactivate_lamp_none": ("turn off the lamp", "switch off the lamp", "lamp off", "turn the lamp off",
                             "put the lamp out", "could you switch the lamp off",
                             "switch the lamp off please", "i want the lamp off", "kill the lamp", "lamp off please"),
    "activate_music_none": ("play some music", "start the music", "put on some music", "music on",
                            "turn the music on", "i want to hear some music", "play music",
                            "could you play some music", "start playing music", "music please"),
    "deactivate_music_none": ("stop the music", "pause the music", "music off", "turn off the music",
                              "stop playing music", "turn the music off", "silence the music",
                              "no more music", "could you stop the music", "kill the music"),
    "increase_volume_none": ("turn up the volume", "increase the volume", "louder please", "make it louder",
                             "volume up", "i can't hear that", "raise the volume", "turn it up",
                             "more volume", "could you turn the volume up"),
    "decrease_volume_none": ("turn down the volume", "decrease the volume", "make it quieter", "volume down",
                             "that's too loud", "lower the volume", "turn it down", "quieter please",
                             "less volume", "could you turn the volume down"),
    "increase_heat_none": ("turn up the heat", "increase the temperature", "make it warmer", "heat up",
                           "it's too cold in here", "turn the heating up", "i'm cold",
                           "raise the temperature", "more heat please", "could you warm it up"),
    "decrease_heat_none": ("turn down the heat", "decrease the temperature", "make it cooler", "heat down",
                           "it's too hot in here", "turn the heating down", "i'm too warm",
                           "lower the temperature", "less heat please", "could you cool it down"),
    "change language_none_none": ("change the language", "switch the language", "change language",
                                  "use a different language", "i want another language", "language settings",
                                  "switch language", "could you change the language",
                                  "another language please", "set a new language"),
}


def expand_intent_templates(fixed: dict[str, Sequence[str]], lights_on: Sequence[str], lights_off: Sequence[str],
                            heat_up: Sequence[str], heat_down: Sequence[str], bring: Sequence[str],
                            language: Sequence[str]) -> dict[str, list[str]]:
    """Every intent's phrasings from a family of templates ({loc}, {obj}, {lang} filled in), unnormalised:
    the corpus' family and the held-out evaluation family (training/suites/phrasings.py) share it."""
    table: dict[str, list[str]] = {k: list(v) for k, v in fixed.items()}
    for loc in LOCATIONS:
        table[f"activate_lights_{loc}"] = [t.format(loc=loc) for t in lights_on]
        table[f"deactivate_lights_{loc}"] = [t.format(loc=loc) for t in lights_off]
        table[f"increase_heat_{loc}"] = [t.format(loc=loc) for t in heat_up]
        table[f"decrease_heat_{loc}"] = [t.format(loc=loc) for t in heat_down]
    for obj in ("newspaper", "juice", "socks", "shoes"):
        table[f"bring_{obj}_none"] = [t.format(obj=obj) for t in bring]
    for lang in LANGUAGES:
        table[f"change language_{lang}_none"] = [t.format(lang=lang) for t in language]
    return table


def intent_phrasings() -> dict[str, list[str]]:
    """All intents (action_object_location) with their normalised phrasings, in a fixed order."""
    table = expand_intent_templates(_FIXED, _LIGHTS_ON_LOC, _LIGHTS_OFF_LOC, _HEAT_UP_LOC, _HEAT_DOWN_LOC,
                                    _BRING, _LANG)
    return {k: [normalise(p) for p in table[k]] for k in sorted(table)}


def split_phrasings(seed: int, n_valid: int = 1, n_test: int = 2) -> dict[str, dict[str, list[str]]]:
    """Hold out phrasings per intent so test (and valid) phrasings never occur in training."""
    out: dict[str, dict[str, list[str]]] = {}
    for k, (intent, phr) in enumerate(intent_phrasings().items()):
        rng = np.random.default_rng([seed, 23, k])
        order = [phr[i] for i in rng.permutation(len(phr))]
        out[intent] = {"test": order[:n_test], "valid": order[n_test:n_test + n_valid],
                       "train": order[n_test + n_valid:]}
    return out


def all_words(texts: Iterable[str]) -> set[str]:
    """Word set of some transcripts (used by tests and docs to show vocabulary coverage)."""
    return {w for t in texts for w in t.split()}
