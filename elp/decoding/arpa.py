"""Read the unigram and bigram levels of an ARPA language model (plain text or gzip).

A general-English ARPA model (pocketsphinx's ``en-us``, LibriSpeech's ``3-gram.arpa``, anything an
n-gram toolkit writes) is the *background* an ASR set's own bigram is interpolated with: it knows the
word pairs of everyday English that the corpus' few thousand training sentences never show. Higher
orders are skipped (the decoder is a bigram decoder), so a truncated higher-order section is harmless.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

from elp.errors import ConfigError

_COUNT = re.compile(r"ngram\s+(\d+)\s*=\s*(\d+)")


@dataclass
class ArpaBigrams:
    """``unigrams[word] = (log10 p, log10 back-off)``; ``bigrams[(history, word)] = log10 p``;
    ``declared`` = the counts the header announces per order (to tell a complete file from a cut one)."""

    unigrams: dict[str, tuple[float, float]] = field(default_factory=dict)
    bigrams: dict[tuple[str, str], float] = field(default_factory=dict)
    declared: dict[int, int] = field(default_factory=dict)

    def restricted(self, alphabet: str) -> ArpaBigrams:
        """Only the words spelled in ``alphabet`` (and the sentence markers): a word the CTC head
        cannot write would only waste probability mass."""
        allowed = set(alphabet)
        keep = {w for w in self.unigrams if w in ("<s>", "</s>") or (w and set(w) <= allowed)}
        return ArpaBigrams({w: v for w, v in self.unigrams.items() if w in keep},
                           {k: v for k, v in self.bigrams.items() if k[0] in keep and k[1] in keep},
                           dict(self.declared))

    @property
    def complete(self) -> bool:
        """Both levels hold as many entries as the header declares."""
        return (self.declared.get(1) == len(self.unigrams)
                and self.declared.get(2, 0) == len(self.bigrams))


def read_arpa_bigrams(path: str | Path) -> ArpaBigrams:
    """Parse the ``\\data\\`` header, ``\\1-grams:`` and ``\\2-grams:`` of an ARPA file; words may be
    separated by spaces or tabs (CMU Sphinx writes tabs)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    result = ArpaBigrams()
    section = ""
    with opener(path, "rt", encoding="utf-8", errors="replace") as lines:  # type: ignore[operator]
        for raw in lines:
            line = raw.strip()
            if not line:
                continue
            if line.startswith("\\"):
                section = line
                continue
            if section == "\\data\\":
                match = _COUNT.fullmatch(line)
                if match:
                    result.declared[int(match[1])] = int(match[2])
                continue
            fields = line.split()
            try:
                if section == "\\1-grams:" and len(fields) >= 2:
                    result.unigrams[fields[1]] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else 0.0)
                elif section == "\\2-grams:" and len(fields) >= 3:
                    result.bigrams[(fields[1], fields[2])] = float(fields[0])
            except ValueError:
                continue  # a line cut short at the end of a truncated file
    if not result.unigrams:
        raise ConfigError(f"{path}: no ARPA unigrams found")
    return result
