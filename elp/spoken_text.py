"""Transcripts in the CTC sets' spoken form: lower-case a-z, apostrophe and single spaces, numbers spelt.

The corpus writes its labels this way before synthesis (``training.corpus.text``), and an ASR set
whose decoder writes digits and punctuation (``elp.heads.seq2seq``) answers in the same form, so
``/asr`` reads one way whatever set serves it. Torch-free.
"""

from __future__ import annotations

import re

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def spell_number(n: int) -> str:
    """Spell a non-negative integer in words, because the CTC vocabulary has no digits."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + spell_number(rest))
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= size:
            rest = n % size
            head = spell_number(n // size) + " " + name
            if rest == 0:
                return head
            return head + (" and " if rest < 100 else " ") + spell_number(rest)
    raise AssertionError("unreachable")


def _spell_token(match: re.Match[str]) -> str:
    digits = match.group(0)
    n = int(digits)
    if len(digits) == 4 and 1100 <= n <= 2099 and n % 100 != 0 and n // 100 != 20:
        # Read years as pairs: "1984" -> "nineteen eighty four".
        return spell_number(n // 100) + " " + (spell_number(n % 100) if n % 100 >= 10
                                                 else "oh " + spell_number(n % 100))
    return spell_number(n)


def normalise(text: str) -> str:
    """Map free text to the CTC vocabulary: lower-case letters, apostrophe and single spaces."""
    text = text.replace("\u2019", "'").replace("`", "'").replace("&", " and ").replace("%", " percent")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"\d+", _spell_token, text)
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^a-z' ]+", " ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)  # quotes, not contractions
    return re.sub(r"\s+", " ", text).strip()
