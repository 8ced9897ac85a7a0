"""Write the text-only LM material of the offline corpus: one normalised sentence a line.

The clips speak ~11,000 sentences; the same sources hold ~40,000 more as text (fortunes of other
lengths, WordNet usage examples never synthesised). An n-gram LM learns from text alone, so
``elp-add-lm --text`` adds these to the training transcripts (dropping any line that holds a
validation or test transcript), the way LibriSpeech's LM corpus adds book text to its transcripts.

    python -m training.corpus.lm_text --corpus data/corpus-wide --out data/lm/corpus-text.txt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.corpus.text import lm_text_sentences
from training.data.manifest import read_manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="data/corpus", help="its asr.jsonl transcripts are left out (spoken already)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    manifest = Path(args.corpus) / "asr.jsonl"
    spoken = {r.text for r in read_manifest(manifest)} if manifest.is_file() else set()
    lines = lm_text_sentences(spoken)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    print(json.dumps({"sentences": len(lines), "words": sum(len(line.split()) for line in lines), "out": str(out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
