"""A minimal reader of Debian's wordnet-base files (no nltk): synonyms of one sense, similar adjectives.

The intent paraphrase family (:mod:`training.corpus.paraphrase`) draws verbs and adjectives from
here so that its wording comes from an outside lexicon, not from whoever wrote the templates. Senses
are named by their number in WordNet's index (``turn_on`` sense 1 is "cause to operate by flipping a
switch"), so a caller picks the sense it means and never gets "turn on" = "become hostile".
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

WORDNET_DIR = Path("/usr/share/wordnet")
_POS_FILE = {"noun": "noun", "verb": "verb", "adj": "adj", "adv": "adv"}


@lru_cache(maxsize=8)
def _index(pos: str) -> dict[str, list[str]]:
    """lemma -> synset offsets in sense order (empty when wordnet-base is not installed)."""
    path = WORDNET_DIR / f"index.{_POS_FILE[pos]}"
    if not path.is_file():
        return {}
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(" "):
            continue  # the licence header
        fields = line.split()
        synsets, pointers = int(fields[2]), int(fields[3])
        offsets = fields[4 + pointers + 2:]
        out[fields[0]] = offsets[:synsets]
    return out


@lru_cache(maxsize=8)
def _data(pos: str) -> dict[str, str]:
    """synset offset -> its data line."""
    path = WORDNET_DIR / f"data.{_POS_FILE[pos]}"
    if not path.is_file():
        return {}
    return {line[:8]: line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
            if line[:1].isdigit()}


def _words(line: str) -> list[str]:
    """The lemmas of a synset line, spaces for underscores, adjective markers such as ``(a)`` dropped."""
    fields = line.split()
    count = int(fields[3], 16)
    return [fields[4 + 2 * i].split("(")[0].replace("_", " ").lower() for i in range(count)]


def available() -> bool:
    """Whether wordnet-base is installed (the paraphrase family is smaller without it)."""
    return bool(_index("verb"))


def synonyms(lemma: str, pos: str, sense: int) -> list[str]:
    """The lemmas of ``lemma``'s WordNet sense number ``sense`` (1-based), ``lemma`` included; [] if absent."""
    offsets = _index(pos).get(lemma.replace(" ", "_").lower(), [])
    if sense > len(offsets):
        return []
    line = _data(pos).get(offsets[sense - 1])
    return _words(line) if line else []


def similar_adjectives(lemma: str, sense: int) -> list[str]:
    """Adjectives WordNet lists as "similar to" (``&``) sense ``sense`` of ``lemma`` (cold -> chilly, icy, ...)."""
    offsets = _index("adj").get(lemma.lower(), [])
    if sense > len(offsets):
        return []
    data = _data("adj")
    line = data.get(offsets[sense - 1], "")
    fields = line.split()
    if not fields:
        return []
    count = int(fields[3], 16)
    at = 4 + 2 * count
    pointers = int(fields[at])
    out: list[str] = []
    for k in range(pointers):
        symbol, offset = fields[at + 1 + 4 * k], fields[at + 2 + 4 * k]
        if symbol == "&" and offset in data:
            out += _words(data[offset])
    return out
