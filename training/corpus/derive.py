"""A validation folder derived from another: one split of a manifest, optionally an even spread of N of its rows,
optionally every clip sent through a channel (a telephone line), written with the corpus schema.

Why: a refit aimed at a channel needs a validation source in that channel, and a fusion grid over a large source
needs a fixed subset of it; both must be rebuilt by one command, not by a scratch script.

    python -m training.corpus.derive data/corpus --split valid --channel telephone --out data/near-phone-valid
    python -m training.corpus.derive data/skyvox --split valid --spread 300 --out data/skyvox-300
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from training.data.manifest import filter_split, read_manifest, write_manifest
from training.dataset import SAMPLE_RATE, load_audio, telephone_band

CHANNELS = {"telephone": telephone_band}


def even_spread(count: int, total: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)``, both ends included (all of them if count >= total)."""
    if count <= 0 or count >= total:
        return list(range(total))
    return sorted(set(np.linspace(0, total - 1, count).round().astype(int).tolist()))


def derive(source: Path, out: Path, task: str, split: str, spread: int = 0, channel: str | None = None) -> dict:
    rows = sorted(filter_split(read_manifest(source / f"{task}.jsonl"), split), key=lambda r: r.id)
    rows = [rows[i] for i in even_spread(spread, len(rows))]
    derived = []
    for row in rows:
        if channel is None:  # the same audio: point at it
            derived.append(dataclasses.replace(row, path=str(Path(row.path).resolve())))
            continue
        relative = f"audio/{row.id}.flac"
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        sf.write(out / relative, CHANNELS[channel](load_audio(row.path)), SAMPLE_RATE, subtype="PCM_16", format="FLAC")
        derived.append(dataclasses.replace(row, path=relative, meta={**row.meta, "channel": channel}))
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(derived, out / f"{task}.jsonl")
    report = {"source": str(source), "task": task, "split": split, "rows": len(derived), "spread": spread,
              "channel": channel}
    (out / "derived.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", help="corpus folder with <task>.jsonl")
    p.add_argument("--out", required=True)
    p.add_argument("--task", default="asr")
    p.add_argument("--split", default="valid")
    p.add_argument("--spread", type=int, default=0, help="keep N rows evenly spread by id (0: all)")
    p.add_argument("--channel", choices=sorted(CHANNELS), default=None, help="send every clip through this channel")
    args = p.parse_args(argv)
    print(json.dumps(derive(Path(args.source), Path(args.out), args.task, args.split, args.spread, args.channel)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
