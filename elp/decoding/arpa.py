"""Read the unigram, bigram and trigram levels of an ARPA language model (plain text or gzip).

A general-English ARPA model (pocketsphinx's ``en-us``, LibriSpeech's ``3-gram.arpa``, anything an
n-gram toolkit writes) is the *background* an ASR set's own n-gram is interpolated with: it knows the
word pairs and triples of everyday English that the corpus' few thousand training sentences never show.
Orders above three are skipped (the decoder reads two words of history), so a truncated higher-order
section is harmless.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

from elp.errors import ConfigError

_COUNT = re.compile(r"ngram\s+(\d+)\s*=\s*(\d+)")
_SECTIONS = {"\\1-grams:": 1, "\\2-grams:": 2, "\\3-grams:": 3}


@dataclass
class ArpaModel:
    """``unigrams[word] = (log10 p, log10 back-off)``; ``bigrams[(history, word)] = log10 p``;
    ``bigram_backoffs[(u, v)]`` = the log10 back-off of a two-word history (only where it is not 0);
    ``trigrams[(u, v, word)] = log10 p``; ``declared`` = the counts the header announces per order (to tell
    a complete file from a cut one)."""

    unigrams: dict[str, tuple[float, float]] = field(default_factory=dict)
    bigrams: dict[tuple[str, str], float] = field(default_factory=dict)
    declared: dict[int, int] = field(default_factory=dict)
    bigram_backoffs: dict[tuple[str, str], float] = field(default_factory=dict)
    trigrams: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def restricted(self, alphabet: str) -> ArpaModel:
        """Only the words spelled in ``alphabet`` (and the sentence markers): a word the CTC head
        cannot write would only waste probability mass."""
        allowed = set(alphabet)
        keep = {w for w in self.unigrams if w in ("<s>", "</s>") or (w and set(w) <= allowed)}
        return ArpaModel({w: v for w, v in self.unigrams.items() if w in keep},
                         {k: v for k, v in self.bigrams.items() if k[0] in keep and k[1] in keep},
                         dict(self.declared),
                         {k: v for k, v in self.bigram_backoffs.items() if k[0] in keep and k[1] in keep},
                         {k: v for k, v in self.trigrams.items() if k[0] in keep and k[1] in keep and k[2] in keep})

    @property
    def order(self) -> int:
        return 3 if self.trigrams else 2 if self.bigrams else 1

    @property
    def complete(self) -> bool:
        """Every level read holds as many entries as the header declares."""
        return (self.declared.get(1) == len(self.unigrams)
                and self.declared.get(2, 0) == len(self.bigrams)
                and (not self.trigrams or self.declared.get(3, 0) == len(self.trigrams)))


def read_arpa(path: str | Path, max_order: int = 3) -> ArpaModel:
    """Parse the ``\\data\\`` header and the n-gram sections up to ``max_order`` (2 or 3) of an ARPA file;
    words may be separated by spaces or tabs (CMU Sphinx writes tabs)."""
    if max_order not in (2, 3):
        raise ConfigError("max_order must be 2 or 3")
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    result = ArpaModel()
    section = 0
    with opener(path, "rt", encoding="utf-8", errors="replace") as lines:  # type: ignore[operator]
        for raw in lines:
            line = raw.strip()
            if not line:
                continue
            if line.startswith("\\"):
                section = -1 if line == "\\data\\" else _SECTIONS.get(line, 0)
                if section == 3 and max_order < 3:
                    break
                continue
            if section == -1:
                match = _COUNT.fullmatch(line)
                if match:
                    result.declared[int(match[1])] = int(match[2])
                continue
            fields = line.split()
            try:
                if section == 1 and len(fields) >= 2:
                    result.unigrams[fields[1]] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else 0.0)
                elif section == 2 and len(fields) >= 3:
                    result.bigrams[(fields[1], fields[2])] = float(fields[0])
                    if max_order == 3 and len(fields) > 3 and float(fields[3]) != 0.0:
                        result.bigram_backoffs[(fields[1], fields[2])] = float(fields[3])
                elif section == 3 and len(fields) >= 4:
                    result.trigrams[(fields[1], fields[2], fields[3])] = float(fields[0])
            except ValueError:
                continue  # a line cut short at the end of a truncated file
    if not result.unigrams:
        raise ConfigError(f"{path}: no ARPA unigrams found")
    return result


def write_arpa(model: ArpaModel, path: str | Path) -> None:
    """A plain ARPA file of the model's levels (space separated, 4 decimals as toolkits write them)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    levels = [len(model.unigrams), len(model.bigrams)] + ([len(model.trigrams)] if model.trigrams else [])
    with open(path, "w", encoding="utf-8") as out:
        out.write("\\data\\\n" + "".join(f"ngram {n + 1}={count}\n" for n, count in enumerate(levels)))
        out.write("\n\\1-grams:\n")
        for word, (log10, backoff) in model.unigrams.items():
            out.write(f"{log10:.4f} {word} {backoff:.4f}\n")
        out.write("\n\\2-grams:\n")
        for (history, word), log10 in model.bigrams.items():
            backoff = model.bigram_backoffs.get((history, word))
            out.write(f"{log10:.4f} {history} {word}" + (f" {backoff:.4f}\n" if backoff is not None else "\n"))
        if model.trigrams:
            out.write("\n\\3-grams:\n")
            for (before, history, word), log10 in model.trigrams.items():
                out.write(f"{log10:.4f} {before} {history} {word}\n")
        out.write("\n\\end\\\n")
