"""Words of a transcript -> the sparse features the text branch's classifier reads (torch-free).

Features of a transcript: its words (``w:``), word pairs (``b:``), the character trigrams of each word
(``c:``, so that a word the recogniser misspelt still shares most of its evidence), and the *lexicon*
features of each word or two-word term (``s:`` WordNet senses and their hypernyms, ``l:`` base forms).
The lexicon is precomputed at training time for every WordNet term whose senses the classifier has
weights for, and stored in the set: the server needs no WordNet. Inflected forms are reduced with
WordNet's detachment rules (``lights`` -> ``light``, ``warmer`` -> ``warm``) before the lexicon look-up,
the same way in training and serving.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_WORD = re.compile(r"[a-z']+")
#: WordNet's morphological detachment rules (morphy), for every part of speech at once
DETACHMENTS: tuple[tuple[str, str], ...] = (
    ("ies", "y"), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
    ("es", "e"), ("es", ""), ("s", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", ""),
    ("er", ""), ("est", ""), ("er", "e"), ("est", "e"),
)


def words(text: str) -> list[str]:
    """Lower-case words of a transcript (letters and apostrophes)."""
    return _WORD.findall(text.lower())


def base_forms(word: str) -> list[str]:
    """``word`` and its candidate base forms in rule order (``dimmed`` -> dimmed, dimme, dimm)."""
    forms = [word]
    for suffix, ending in DETACHMENTS:
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            candidate = word[: len(word) - len(suffix)] + ending
            if candidate not in forms:
                forms.append(candidate)
    return forms


def lexicon_entry(term: str, lexicon: Mapping[str, Sequence[str]]) -> list[str]:
    """The lexicon features of a term: a two-word term's own entry; a word's entry joined with those of
    its candidate base forms (``lights`` -> lights, light), each feature once."""
    forms = [term] if " " in term else base_forms(term)
    found: list[str] = []
    for form in forms:
        for feature in lexicon.get(form, ()):
            if feature not in found:
                found.append(feature)
    return found


def transcript_features(text: str, lexicon: Mapping[str, Sequence[str]]) -> list[str]:
    """Every feature of one transcript (repeats kept: a feature counts once per occurrence)."""
    tokens = words(text)
    features: list[str] = []
    for token in tokens:
        features.append(f"w:{token}")
        padded = f"<{token}>"
        features.extend(f"c:{padded[i:i + 3]}" for i in range(len(padded) - 2))
        features.extend(lexicon_entry(token, lexicon))
    for first, second in zip(tokens, tokens[1:], strict=False):
        features.append(f"b:{first} {second}")
        features.extend(lexicon_entry(f"{first} {second}", lexicon))
    return features


def feature_indices(text: str, lexicon: Mapping[str, Sequence[str]], index: Mapping[str, int]) -> list[int]:
    """:func:`transcript_features` restricted to the classifier's feature table, as row indices."""
    return [index[name] for name in transcript_features(text, lexicon) if name in index]
