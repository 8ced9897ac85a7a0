"""The WordNet side of the text branch: each term's senses, their hypernyms and similar adjectives as
features, read from Debian's wordnet-base files (``training.corpus.wordnet``'s reader), and the stored
lexicon: every WordNet term (and irregular form) whose features the classifier has weights for.

Only the first ``senses`` senses of a term per part of speech count (WordNet orders them by frequency),
so a rare sense ("lights" = lungs) does not tie unrelated words together.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache

from training.corpus.wordnet import WORDNET_DIR, _data, _index

PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
#: pointers whose targets become ``h:`` features: hypernym, instance hypernym, similar-to, verb group
RELATED = ("@", "@i", "&", "$")


@lru_cache(maxsize=200_000)
def _related(pos: str, offset: str) -> tuple[str, ...]:
    """``pos:offset`` of the synsets a synset points to by :data:`RELATED` pointers."""
    fields = _data(pos).get(offset, "").split()
    if not fields:
        return ()
    at = 4 + 2 * int(fields[3], 16)
    targets = []
    for k in range(int(fields[at])):
        symbol, target, target_pos = fields[at + 1 + 4 * k : at + 4 + 4 * k]
        if symbol in RELATED:
            targets.append(f"{target_pos}:{target}")
    return tuple(targets)


@lru_cache(maxsize=1)
def irregular_forms() -> dict[str, list[str]]:
    """Irregular inflections (``brought`` -> bring) from the ``*.exc`` files."""
    forms: dict[str, list[str]] = {}
    for pos in PARTS_OF_SPEECH:
        path = WORDNET_DIR / f"{pos}.exc"
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                form, *bases = line.split()
                forms.setdefault(form.replace("_", " "), []).extend(b.replace("_", " ") for b in bases)
    return forms


def wordnet_features(term: str, senses: int) -> list[str]:
    """``s:`` features of a term's first ``senses`` senses per part of speech and ``h:`` features of
    the synsets they point to; irregular forms take their bases' features."""
    key = term.replace(" ", "_")
    features: list[str] = []
    for pos in PARTS_OF_SPEECH:
        for offset in _index(pos).get(key, [])[:senses]:
            features.append(f"s:{pos[0]}:{offset}")
            features.extend(f"h:{target}" for target in _related(pos, offset))
    for base in irregular_forms().get(term, []):
        if base != term:
            features.extend(wordnet_features(base, senses))
    return list(dict.fromkeys(features))


class WordNetLexicon(Mapping[str, Sequence[str]]):
    """Term -> its WordNet features, computed on first use (training reads a few hundred terms)."""

    def __init__(self, senses: int) -> None:
        self.senses = senses
        self._cache: dict[str, list[str]] = {}

    def __getitem__(self, term: str) -> list[str]:
        if term not in self._cache:
            features = wordnet_features(term, self.senses)
            if not features:
                raise KeyError(term)
            self._cache[term] = features
        return self._cache[term]

    def __iter__(self) -> Iterator[str]:
        return iter(all_terms())

    def __len__(self) -> int:
        return len(all_terms())


@lru_cache(maxsize=1)
def all_terms() -> list[str]:
    """Every WordNet lemma of one or two words, and every irregular form, sorted."""
    terms = {lemma.replace("_", " ") for pos in PARTS_OF_SPEECH for lemma in _index(pos)}
    terms |= set(irregular_forms())
    return sorted(t for t in terms if len(t.split()) <= 2 and "\n" not in t)


def stored_lexicon(senses: int, table: Mapping[str, int]) -> dict[str, list[str]]:
    """Every term whose WordNet features meet the classifier's feature ``table``, with only those
    features: what the set stores, so that serving reads the same features training did."""
    lexicon: dict[str, list[str]] = {}
    for term in all_terms():
        kept = [f for f in wordnet_features(term, senses) if f in table]
        if kept:
            lexicon[term] = kept
    return lexicon
