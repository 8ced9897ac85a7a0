"""Train the CTC draft of a decoder set (``elp.heads.draft``) and attach it to the set.

The draft reads exactly what the set's decoder reads (the encoder's last layer on the clip and the
set's trailing zeros, as served), so its frames are captured through the served model: ``cache``
runs each clip through ``MultiAdapterModel`` with the decoder replaced by a recorder. ``train`` fits
the draft with CTC on the clips' transcripts (spoken form) and chooses the epoch on validation
clips; ``attach`` writes the set with the draft in it. A draft changes speed only: the decoder
checks every token it proposes (``elp.heads.speculative``).

    python -m training.draft_ctc cache --set adapters_store/asr-whisper --manifest data/corpus/asr.jsonl \
        --split train --views 2 --out data/draft-cache/train
    python -m training.draft_ctc train --cache data/draft-cache/train --valid data/draft-cache/valid \
        --out data/candidates/draft
    python -m training.draft_ctc attach adapters_store/asr-whisper --draft data/candidates/draft --out SET
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from elp import MultiAdapterModel, load_backbone
from elp.adapter_set import AdapterSet
from elp.heads.draft import CtcDraft, greedy_text
from training.data.manifest import filter_split, read_manifest
from training.dataset import AugmentConfig, augment, load_audio
from training.distill_cache import save_shard
from training.metrics import cer
from training.suites.guard import check_training_rows

#: the draft's characters: blank, space, apostrophe, a-z (the spoken form of ``elp.spoken_text``)
VOCAB = ["<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz"]
SYMBOL_INDEX = {symbol: index for index, symbol in enumerate(VOCAB)}
DRAFT_FILE = "draft_model.safetensors"
DRAFT_CONFIG = "draft_config.json"


def capture_frames(model: MultiAdapterModel, key: str, wave: np.ndarray) -> torch.Tensor:
    """The frames the set's head receives for one clip, served as one row."""
    head = model.adapter_sets[key].head
    captured: list[torch.Tensor] = []

    def record(features, lengths, prosody=None, **_):
        captured.append(features[0, : int(lengths[0])].clone())
        return torch.zeros(features.shape[0], 1)

    head.forward = record
    try:
        model.head_outputs([torch.from_numpy(wave)], [key])
    finally:
        del head.forward
    return captured[0]


def cache(args: argparse.Namespace) -> None:
    model = MultiAdapterModel(load_backbone(args.backbone))  # float32: what a decoder set reads
    key = Path(args.set).name
    model.add_adapter_set(key, AdapterSet.load(args.set))
    rows = filter_split(read_manifest(args.manifest), args.split)[: args.limit or None]
    for part in args.manifest_extra:
        rows += filter_split(read_manifest(part), args.split)
    if args.split == "train":  # the draft is trained on these: never on a held-out suite's clips
        check_training_rows(rows, "draft training clips")
    rows = rows[args.part_index::args.parts]
    started, shard, tensors, texts = time.time(), 0, {}, []
    for position, row in enumerate(rows):
        clean = load_audio(row.path)
        for view in range(args.views):
            wave = clean if view == 0 else augment(clean, np.random.default_rng((args.seed, position, view)),
                                                   AugmentConfig())
            tensors[str(len(texts))] = capture_frames(model, key, wave.astype(np.float32)).half()
            texts.append(row.text)
        if len(texts) >= args.shard_size or position == len(rows) - 1:
            save_shard(Path(args.out), args.part_index * 100000 + shard, tensors, {"texts": json.dumps(texts)})
            shard, tensors, texts = shard + 1, {}, []
            print(f"{position + 1}/{len(rows)} clips, {time.time() - started:.0f} s", flush=True)


PSEUDO_FILE = "decoder-texts.json"


def load_cache(folders: list[str], target: str = "text") -> list[tuple[torch.Tensor, str]]:
    """(frames, text) of every cached clip; ``target`` ``decoder``: the text is what the set's decoder
    itself answers for those frames (``pseudo``), so the draft learns to guess the decoder."""
    from safetensors import safe_open

    items = []
    for folder in folders:
        decoded = json.loads((Path(folder) / PSEUDO_FILE).read_text()) if target == "decoder" else {}
        for file in sorted(Path(folder).glob("shard-*.safetensors")):
            with safe_open(file, "pt") as handle:
                texts = json.loads(handle.metadata()["texts"])
            texts = decoded.get(file.name, texts) if target == "decoder" else texts
            tensors = load_file(file)
            items += [(tensors[str(i)], text) for i, text in enumerate(texts)]
    return items


@torch.inference_mode()
def pseudo(args: argparse.Namespace) -> None:
    """Write what the set's decoder answers (greedy, spoken form) for every cached clip, batched over
    clips of similar length (one weight read a token for the whole batch)."""
    from elp.heads.seq2seq import WhisperTranscriber

    adapter_set = AdapterSet.load(args.set)
    head = adapter_set.head
    head.config.draft_max_rows = 0
    transcriber = WhisperTranscriber(head.tokens())
    for folder in args.cache:
        out = Path(folder) / PSEUDO_FILE
        done = json.loads(out.read_text()) if out.exists() else {}
        for file in sorted(Path(folder).glob("shard-*.safetensors")):
            if file.name in done:
                continue
            tensors = load_file(file)
            texts = [""] * len(tensors)
            # each clip's position rides where ``batches`` carries a text, so answers go back in order
            for padded, lengths, rows in batches([(tensors[str(i)], i) for i in range(len(tensors))],
                                                 args.batch_size, None):
                for row, output in zip(rows, head(padded, lengths), strict=True):
                    texts[row] = transcriber(output)["text"]
            done[file.name] = texts
            out.write_text(json.dumps(done))
            print(f"{folder}: {len(done)} shards", flush=True)


def encode_text(text: str) -> list[int]:
    return [SYMBOL_INDEX[c] for c in " ".join(text.lower().split()) if c in SYMBOL_INDEX]


def batches(items, size: int, rng: np.random.Generator | None):
    order = np.argsort([item[0].shape[0] for item in items])
    groups = [order[i:i + size] for i in range(0, len(order), size)]
    if rng is not None:
        rng.shuffle(groups)
    for group in groups:
        frames = [items[i][0] for i in group]
        lengths = torch.tensor([f.shape[0] for f in frames])
        padded = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True).float()
        yield padded, lengths, [items[i][1] for i in group]


@torch.no_grad()
def evaluate(draft: CtcDraft, items, size: int = 32) -> float:
    draft.eval()
    references, hypotheses = [], []
    for frames, lengths, texts in batches(items, size, None):
        log_probs = draft(frames)
        for row, length in enumerate(lengths.tolist()):
            hypotheses.append(greedy_text(log_probs[row, :length], VOCAB))
            references.append(" ".join(texts[row].lower().split()))
    return cer(references, hypotheses)


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    items, valid = load_cache(args.cache, args.target), load_cache(args.valid, args.target)
    d_model = items[0][0].shape[1]
    draft = CtcDraft(d_model, args.hidden, args.kernel, len(VOCAB))
    optimizer = torch.optim.AdamW(draft.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * math.ceil(len(items) / args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps, pct_start=0.1)
    loss_fn = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    rng = np.random.default_rng(args.seed)
    best = (float("inf"), -1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for epoch in range(args.epochs):
        draft.train()
        total = 0.0
        for frames, lengths, texts in batches(items, args.batch_size, rng):
            targets = [torch.tensor(encode_text(t)) for t in texts]
            log_probs = draft(frames + args.noise * torch.randn_like(frames))
            loss = loss_fn(log_probs.transpose(0, 1), torch.cat(targets), lengths,
                           torch.tensor([len(t) for t in targets]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(texts)
        valid_cer = evaluate(draft, valid)
        print(f"epoch {epoch + 1}: loss {total / len(items):.3f}, valid CER {100 * valid_cer:.2f}%", flush=True)
        if valid_cer < best[0]:
            best = (valid_cer, epoch + 1)
            save_file({k: v.contiguous() for k, v in draft.state_dict().items()}, out / DRAFT_FILE)
            (out / DRAFT_CONFIG).write_text(json.dumps({
                "hidden": args.hidden, "kernel": args.kernel, "vocab": VOCAB, "epoch": epoch + 1,
                "valid_cer": round(100 * valid_cer, 2), "train_clips": len(items), "cache": args.cache,
                "target": args.target,
                "valid": args.valid}, indent=2) + "\n")
    print(f"chose epoch {best[1]} (valid CER {100 * best[0]:.2f}%) -> {out}")


def attach(args: argparse.Namespace) -> None:
    """The set with the draft in it: its config names the draft's shape, its weights ride in the set's
    safetensors under ``head.draft.*``."""
    from elp.convert.whisper_decoder_set import with_draft

    adapter_set = with_draft(AdapterSet.load(args.set), Path(args.draft), args.max_tokens)
    adapter_set.save(args.out)
    print(f"wrote {args.out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("cache", help="capture the frames the set's decoder reads")
    c.add_argument("--set", required=True)
    c.add_argument("--backbone", default="models/whisper-base")
    c.add_argument("--manifest", required=True)
    c.add_argument("--manifest-extra", nargs="*", default=[])
    c.add_argument("--split", default="train")
    c.add_argument("--views", type=int, default=1, help="view 0 clean, then augmented views")
    c.add_argument("--limit", type=int, default=0)
    c.add_argument("--parts", type=int, default=1)
    c.add_argument("--part-index", type=int, default=0)
    c.add_argument("--shard-size", type=int, default=200)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--out", required=True)
    t = commands.add_parser("train", help="fit the draft; the epoch with the lowest validation CER is kept")
    t.add_argument("--cache", nargs="+", required=True)
    t.add_argument("--valid", nargs="+", required=True)
    t.add_argument("--hidden", type=int, default=384)
    t.add_argument("--kernel", type=int, default=5)
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--noise", type=float, default=0.0, help="Gaussian noise on the frames while training")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--target", choices=["text", "decoder"], default="text",
                   help="the clips' transcripts, or the set's decoder's own answers (pseudo)")
    t.add_argument("--out", required=True)
    p = commands.add_parser("pseudo", help="the set's own greedy transcripts of cached clips")
    p.add_argument("--set", required=True)
    p.add_argument("--cache", nargs="+", required=True)
    p.add_argument("--batch-size", type=int, default=24)
    p.add_argument("--threads", type=int, default=2)
    a = commands.add_parser("attach", help="write the set with a trained draft in it")
    a.add_argument("set")
    a.add_argument("--draft", required=True)
    a.add_argument("--max-tokens", type=int, default=8, help="most draft tokens a decoder pass checks")
    a.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(getattr(args, "threads", 2) or 2)
    {"cache": cache, "pseudo": pseudo, "train": train, "attach": attach}[args.command](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
