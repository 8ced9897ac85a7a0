"""``python -m training.general_lm``: a general-English trigram ARPA file for ``elp-add-lm --background-arpa``.

The offline source is the US-English trigram that ships inside the ``pocketsphinx`` wheel (PyPI, the
``train`` extra; CMU Sphinx, BSD licence): 72,547 words, 2.05M bigrams and 1.67M trigrams of everyday English,
trained on text that has nothing to do with this project's corpus. pocketsphinx 5.1.1's own ARPA writer dies
with a segmentation fault before its trigram section (probably because its trie holds 6 bigrams fewer than its
header declares and the writer sorts 6 empty entries), so the trie file is read here directly: the layout of
``lm_trie.c`` (unigram records, then bit-packed bigram and trigram arrays, values quantised to 16-bit bins;
``read_sphinx_trie``). The values are what pocketsphinx itself scores with (tested against its ``prob``). Users
with a network can pass any ARPA file instead (e.g. LibriSpeech's ``3-gram.pruned.1e-7.arpa.gz`` from
openslr.org) and skip this step.

    python -m training.general_lm --out data/lm/en-us-trigram.arpa
    python -m training.general_lm --order 2 --out data/lm/en-us-bigram.arpa
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import struct
from pathlib import Path

import numpy as np

from elp.decoding.arpa import ArpaModel, write_arpa

TRIE_HEADER = b"Trie Language Model"
QUANT_BINS = 1 << 16
MIN_LEVEL_SHARE = 0.999
LOG10_OF_BASE = math.log10(1.0001)  # pocketsphinx's default log base: its stored floats are log_1.0001 p


def _bits_needed(value: int) -> int:
    return int(value).bit_length()


def _read_fields(memory: np.ndarray, bit_offsets: np.ndarray, bits: int) -> np.ndarray:
    """Little-endian ``bits``-wide fields at each bit offset of a packed array (``bitarr_read_int25``)."""
    first_byte = bit_offsets >> 3
    value = np.zeros(len(bit_offsets), np.uint64)
    for byte in range(8):
        value |= memory[first_byte + byte].astype(np.uint64) << np.uint64(8 * byte)
    return ((value >> (bit_offsets & 7).astype(np.uint64)) & np.uint64((1 << bits) - 1)).astype(np.int64)


def read_sphinx_trie(path: str | Path) -> ArpaModel:
    """A pocketsphinx trigram trie file (``*.lm.bin``) as an :class:`ArpaModel` with log10 values."""
    data = Path(path).read_bytes()
    if not data.startswith(TRIE_HEADER) or data[len(TRIE_HEADER)] != 3:
        raise SystemExit(f"{path}: not a pocketsphinx trigram trie")
    at = len(TRIE_HEADER) + 1
    counts = struct.unpack_from("<3I", data, at)
    at += 12 + 4  # the counts, then a retired quantisation-type field
    tables = np.frombuffer(data, np.float32, 3 * QUANT_BINS, at).astype(np.float64) * LOG10_OF_BASE
    at += 4 * 3 * QUANT_BINS
    bigram_probs, bigram_backoffs, trigram_probs = (tables[i * QUANT_BINS: (i + 1) * QUANT_BINS] for i in range(3))
    unigram = np.frombuffer(data, np.dtype([("prob", "<f4"), ("bo", "<f4"), ("next", "<u4")]), counts[0] + 1, at)
    at += 12 * (counts[0] + 1)
    word_bits, next_bits = _bits_needed(counts[0]), _bits_needed(counts[2])
    middle_bits, longest_bits = word_bits + 32 + next_bits, word_bits + 16
    middle_size = ((1 + counts[1]) * middle_bits + 7) // 8 + 8
    longest_size = ((1 + counts[2]) * longest_bits + 7) // 8 + 8
    middle = np.frombuffer(data, np.uint8, middle_size, at)
    longest = np.frombuffer(data, np.uint8, longest_size, at + middle_size)
    at += middle_size + longest_size
    (num_bytes,) = struct.unpack_from("<I", data, at)
    words = [w.decode("utf-8", "replace") for w in data[at + 4: at + 4 + num_bytes].split(b"\0")[: counts[0]]]

    # the trie runs from the predicted word back: unigram w -> bigram entries (v) -> trigram entries (u)
    bigrams_used = int(unigram["next"][-1])
    rows = np.arange(bigrams_used + 1, dtype=np.int64) * middle_bits
    previous = _read_fields(middle, rows, word_bits)[:-1]
    backoff_bin = _read_fields(middle, rows + word_bits, 16)[:-1]
    prob_bin = _read_fields(middle, rows + word_bits + 16, 16)[:-1]
    trigram_start = _read_fields(middle, rows + word_bits + 32, next_bits)
    bigram_word = np.repeat(np.arange(counts[0]), np.diff(unigram["next"].astype(np.int64)))
    trigrams_used = int(trigram_start[-1])
    rows3 = np.arange(trigrams_used, dtype=np.int64) * longest_bits
    before = _read_fields(longest, rows3, word_bits)
    trigram_prob_bin = _read_fields(longest, rows3 + word_bits, 16)
    trigram_parent = np.repeat(np.arange(bigrams_used), np.diff(trigram_start))

    model = ArpaModel(declared={1: counts[0], 2: counts[1], 3: counts[2]})
    unigram_log10 = unigram["prob"][:-1].astype(np.float64) * LOG10_OF_BASE
    unigram_backoff = unigram["bo"][:-1].astype(np.float64) * LOG10_OF_BASE
    model.unigrams = {w: (float(p), float(b)) for w, p, b in zip(words, unigram_log10, unigram_backoff, strict=True)}
    model.bigrams = {(words[v], words[w]): float(p) for v, w, p in zip(previous, bigram_word, bigram_probs[prob_bin],
                                                                        strict=True)}
    model.bigram_backoffs = {(words[v], words[w]): float(b) for v, w, b in
                             zip(previous, bigram_word, bigram_backoffs[backoff_bin], strict=True) if b != 0.0}
    model.trigrams = {(words[u], words[previous[m]], words[bigram_word[m]]): float(p) for u, m, p in
                      zip(before, trigram_parent, trigram_probs[trigram_prob_bin], strict=True)}
    return model


def accept(model: ArpaModel) -> None:
    """Refuse a model that lost unigrams or more than a few bigrams or trigrams, or whose unigram
    probabilities do not sum to one (what a model read with a wrong log table gives)."""
    if len(model.unigrams) != model.declared.get(1, -1):
        raise SystemExit(f"incomplete model: {len(model.unigrams)}/{model.declared.get(1)} unigrams")
    for order, level in ((2, model.bigrams), (3, model.trigrams)):
        declared = model.declared.get(order, 0)
        if (level or order == 2) and len(level) < MIN_LEVEL_SHARE * declared:
            raise SystemExit(f"incomplete model: {len(level)}/{declared} {order}-grams")
    total = sum(10.0 ** log10 for log10, _ in model.unigrams.values())
    if abs(total - 1.0) > 0.05:
        raise SystemExit(f"not a distribution: unigram probabilities sum to {total:.3g}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("data/lm/en-us-trigram.arpa"))
    p.add_argument("--order", type=int, choices=[2, 3], default=3, help="2 leaves the trigrams out")
    p.add_argument("--trie", help="a pocketsphinx *.lm.bin (default: the en-us model inside the wheel)")
    args = p.parse_args(argv)
    if args.trie is None:
        try:
            import pocketsphinx
        except ImportError:
            raise SystemExit("pip install pocketsphinx (the train extra), or pass --trie") from None
        args.trie = pocketsphinx.get_model_path("en-us/en-us.lm.bin")
    model = read_sphinx_trie(args.trie)
    accept(model)
    if args.order == 2:
        model.trigrams, model.bigram_backoffs = {}, {}
    write_arpa(model, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(json.dumps({"out": str(args.out), "unigrams": len(model.unigrams), "bigrams": len(model.bigrams),
                      "trigrams": len(model.trigrams), "declared": model.declared, "sha256": digest}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
