"""``python -m training.general_lm``: a general-English bigram ARPA file for ``elp-add-lm --background-arpa``.

The offline source is the US-English trigram that ships inside the ``pocketsphinx`` wheel (PyPI, the
``bench`` extra; CMU Sphinx, BSD licence): 72,547 words and 2,051,547 bigrams of everyday English,
trained on text that has nothing to do with this project's corpus. pocketsphinx 5.1.1 dies with a
segmentation fault while it writes that model's *trigram* section, so the dump runs in a child
process and only the unigram and bigram levels are kept (all the decoder uses); the file is accepted
only if every unigram and at least 99.9% of the declared bigrams arrived (the crash loses at most
the last line buffer). Users with a network can pass any ARPA file instead (e.g. LibriSpeech's
``3-gram.pruned.1e-7.arpa.gz`` from openslr.org) and skip this step.

    python -m training.general_lm --out data/lm/en-us-bigram.arpa
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from elp.decoding.arpa import ArpaBigrams, read_arpa_bigrams

_DUMP = """
import sys
import pocketsphinx as ps
config, logmath = ps.Config(), ps.LogMath()  # both must outlive the model (it keeps raw pointers)
model = ps.NGramModel(config, logmath, ps.get_model_path("en-us/en-us.lm.bin"))
model.write(sys.argv[1], ps.NGramModel.str_to_type("arpa"))
"""

MIN_BIGRAM_SHARE = 0.999


def dump_pocketsphinx(raw_path: Path) -> int:
    """Let pocketsphinx write its en-us model as ARPA into ``raw_path``; returns the child's exit code."""
    return subprocess.run([sys.executable, "-c", _DUMP, str(raw_path)], check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def write_bigram_arpa(model: ArpaBigrams, path: Path) -> None:
    """A plain two-level ARPA file (space separated, counts as written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        out.write(f"\\data\\\nngram 1={len(model.unigrams)}\nngram 2={len(model.bigrams)}\n\n\\1-grams:\n")
        for word, (log10, backoff) in model.unigrams.items():
            out.write(f"{log10:.4f} {word} {backoff:.4f}\n")
        out.write("\n\\2-grams:\n")
        for (history, word), log10 in model.bigrams.items():
            out.write(f"{log10:.4f} {history} {word}\n")
        out.write("\n\\end\\\n")


def accept(model: ArpaBigrams) -> None:
    """Refuse a dump that lost unigrams or more than a line buffer of bigrams, or whose unigram
    probabilities do not sum to one (what a model read with a dangling log table writes)."""
    unigrams, bigrams = model.declared.get(1, -1), model.declared.get(2, -1)
    if len(model.unigrams) != unigrams or len(model.bigrams) < MIN_BIGRAM_SHARE * bigrams:
        raise SystemExit(f"incomplete ARPA dump: {len(model.unigrams)}/{unigrams} unigrams, "
                         f"{len(model.bigrams)}/{bigrams} bigrams")
    total = sum(10.0 ** log10 for log10, _ in model.unigrams.values())
    if abs(total - 1.0) > 0.05:
        raise SystemExit(f"ARPA dump is not a distribution: unigram probabilities sum to {total:.3g}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("data/lm/en-us-bigram.arpa"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "en-us.arpa"
        code = dump_pocketsphinx(raw)
        if not raw.is_file():
            raise SystemExit(f"pocketsphinx wrote nothing (exit code {code}); pip install pocketsphinx")
        model = read_arpa_bigrams(raw)
    accept(model)
    write_bigram_arpa(model, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(json.dumps({"out": str(args.out), "unigrams": len(model.unigrams), "bigrams": len(model.bigrams),
                      "declared_bigrams": model.declared.get(2), "writer_exit_code": code, "sha256": digest}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
