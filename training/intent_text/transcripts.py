"""The ASR set's greedy transcripts (and the intent set's acoustic logits) of clips whose encoder pass
``training.cached`` already cached.

The intent set's E- and P-adapters are the ASR set's, so the cached layer outputs of the intent clips are
exactly what the ASR set's L-adapters and CTC head read when both run in one served batch: decoding them
gives the transcript the served text branch will see, with no new encoder pass.

    python -m training.intent_text.transcripts --asr adapters_store/asr-default \
        --cache-dir data/cache/intent-para --corpus data/corpus --extra-corpus data/intent-para-50 \
        --out data/candidates/intent-text/transcripts.jsonl
    python -m training.intent_text.transcripts --intent adapters_store/intent-default ... --out acoustic.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from elp import AdapterSet
from elp.heads import ctc_greedy_decode
from training.data.manifest import filter_split, read_manifest


def cached_blocks(corpus: str, extra: list[str], task: str = "intent") -> list[list]:
    """The row blocks in the order ``training.cached`` encoded them (one cache file per block): the
    corpus' train, valid and test rows, then each extra corpus' train and valid rows."""
    rows = read_manifest(Path(corpus) / f"{task}.jsonl")
    blocks = [[r for split in ("train", "valid", "test") for r in filter_split(rows, split)]]
    for folder in extra:
        extra_rows = read_manifest(Path(folder) / f"{task}.jsonl")
        blocks.append([*filter_split(extra_rows, "train"), *filter_split(extra_rows, "valid")])
    return blocks


def cache_file_for(cache_dir: str, count: int) -> Path:
    """The cache file that holds ``count`` clips (the file names are signatures, not row counts)."""
    for file in sorted(Path(cache_dir).glob("*.safetensors")):
        with safe_open(str(file), "pt") as handle:
            clips = {name.split(".")[0] for name in handle.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        if len(clips) == count:
            return file
    raise SystemExit(f"no cache file in {cache_dir} holds {count} clips")


@torch.no_grad()
def ctc_log_probs(adapter_set: AdapterSet, file: Path, indices: list[int], batch_size: int = 32) -> list[torch.Tensor]:
    """An ASR set's CTC log-probabilities (real frames only) of the clips ``indices`` of one cache file."""
    answers = []
    with safe_open(str(file), "pt") as handle:
        layers = sum(1 for name in handle.keys() if name.startswith("0.") and name[2:].isdigit())  # noqa: SIM118
        for start in range(0, len(indices), batch_size):
            states = [[handle.get_tensor(f"{i}.{k}").float() for k in range(layers)]
                      for i in indices[start: start + batch_size]]
            lengths = torch.tensor([s[0].shape[0] for s in states])
            padded = [nn.utils.rnn.pad_sequence([s[k] for s in states], batch_first=True) for k in range(layers)]
            outputs = adapter_set.head(adapter_set.featurizer(padded), lengths)
            answers += [lp[: int(n)].clone() for lp, n in zip(outputs, lengths, strict=True)]
    return answers


@torch.no_grad()
def decode_file(adapter_set: AdapterSet, file: Path, count: int, batch_size: int = 32, with_lm: bool = False) -> list:
    """Per clip of one cache file, in index order: the greedy transcript of an ASR set (``with_lm``:
    its beam search under its LM), or the class logits (a list) of a classifier set."""
    vocab, answers = adapter_set.config.vocab, []
    with safe_open(str(file), "pt") as handle:
        layers = sum(1 for name in handle.keys() if name.startswith("0.") and name[2:].isdigit())  # noqa: SIM118
        for start in range(0, count, batch_size):
            clips = range(start, min(count, start + batch_size))
            states = [[handle.get_tensor(f"{i}.{k}").float() for k in range(layers)] for i in clips]
            lengths = torch.tensor([s[0].shape[0] for s in states])
            padded = [nn.utils.rnn.pad_sequence([s[k] for s in states], batch_first=True) for k in range(layers)]
            outputs = adapter_set.head(adapter_set.featurizer(padded), lengths)
            if vocab and with_lm:
                answers += [adapter_set.decode_ctc(lp[: int(n)]) for lp, n in zip(outputs, lengths, strict=True)]
            elif vocab:
                answers += [ctc_greedy_decode(lp, int(n), vocab) for lp, n in zip(outputs, lengths, strict=True)]
            else:
                answers += [[round(v, 5) for v in row] for row in outputs.float().tolist()]
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--asr", help="an ASR set whose E/P the cached pass used: transcripts (field asr)")
    which.add_argument("--intent", help="an intent set with those E/P: acoustic logits (field acoustic)")
    parser.add_argument("--with-lm", action="store_true", help="ASR: beam search under the set's LM (field asr_lm)")
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--extra-corpus", action="append", default=[])
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    adapter_set = AdapterSet.load(args.asr or args.intent).eval()
    field = ("asr_lm" if args.with_lm else "asr") if args.asr else "acoustic"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for source, block in zip([args.corpus, *args.extra_corpus], cached_blocks(args.corpus, args.extra_corpus),
                                 strict=True):
            file = cache_file_for(args.cache_dir, len(block))
            answers = decode_file(adapter_set, file, len(block), with_lm=args.with_lm)
            for row, answer in zip(block, answers, strict=True):
                fh.write(json.dumps({"source": source, "id": row.id, "split": row.split, "label": row.label,
                                     "text": row.text, field: answer}) + "\n")
            print(json.dumps({"source": source, "clips": len(block)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
