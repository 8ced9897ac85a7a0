"""Live streams under load: how long a speaker waits after an utterance for its answer, with 1-N streams at once.

Each stream is a real client (``websockets``) sending a recording of corpus test sentences joined with 1 s
pauses at the pace of speech, in 20 ms messages, to a real ``python -m server`` (the shipped sets on the
embedded backbone). Per final answer: **wait** = the moment it arrived - the moment the stream's audio reached
the utterance's end (``end_s``: 0.2 s after its last voice; the end pause is part of the wait). Per stream:
**lag** = how far behind the pace of speech its sending fell (a server that cannot keep up slows its readers).
Adapter sets are measured interleaved (round-robin, each repeat starting with another), each point repeated,
medians with min-max reported, the load average noted.

    python -m benchmarks.streams --adapters asr-default asr-whisper --streams 1 4 8 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    CORPUS_DIR,
    REPO_ROOT,
    corpus_rows,
    decode_clip,
    free_port,
    markdown_table,
    server_command,
    started_processes,
    write_results,
)
from benchmarks.stats import load_note, machine_load, median_rows, round_robin

RATE = 16000
FRAME = 320  # 20 ms


def recordings(count: int, sentences: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` recordings of ``sentences`` corpus test sentences each, 1 s of quiet before, between and after."""
    rows = corpus_rows("asr")
    if not rows:
        raise SystemExit("benchmarks.streams needs the corpus: python -m training.corpus.generate --out data/corpus")
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    made = []
    for _ in range(count):
        parts = []
        for row in rng.sample(rows, sentences):
            parts += [(noise.standard_normal(RATE) * 1e-3).astype(np.float32),
                      decode_clip((CORPUS_DIR / row.path).read_bytes())]
        made.append(np.concatenate([*parts, (noise.standard_normal(RATE) * 1e-3).astype(np.float32)]))
    return made


async def one_stream(url: str, audio: np.ndarray) -> dict[str, Any]:
    """Send ``audio`` at the pace of speech; the waits of its final answers, its partials and its lag."""
    from websockets.asyncio.client import connect

    waits, partials, lag = [], 0, 0.0
    pcm = np.clip(np.round(audio * 32768), -32768, 32767).astype("<i2")
    async with connect(url, max_size=2**22) as ws:
        json.loads(await ws.recv())
        started = time.perf_counter()

        async def send() -> None:
            nonlocal lag
            for at in range(0, len(pcm), FRAME):
                due = started + at / RATE
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                lag = max(lag, time.perf_counter() - due)
                await ws.send(pcm[at:at + FRAME].tobytes())
            await ws.send(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send())
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "result":
                waits.append(time.perf_counter() - (started + message["end_s"]))
            elif message["type"] == "partial":
                partials += 1
            elif message["type"] in ("end", "error"):
                break
        await sender
    return {"waits": waits, "partials": partials, "lag": lag}


async def run_point(base: str, adapter: str, audios: list[np.ndarray]) -> dict[str, Any]:
    """``len(audios)`` streams at once to one set, started 0.25 s apart (speakers do not start in unison)."""
    async def delayed(index: int, audio: np.ndarray) -> dict[str, Any]:
        await asyncio.sleep(0.25 * index)
        return await one_stream(f"{base}/asr/stream?adapter={adapter}", audio)

    results = await asyncio.gather(*(delayed(i, audio) for i, audio in enumerate(audios)))
    waits = np.asarray([w for r in results for w in r["waits"]]) * 1000.0
    finals = len(waits)
    return {"adapter": adapter, "streams": len(audios), "finals": finals,
            "wait_p50_ms": round(float(np.percentile(waits, 50)), 1) if finals else None,
            "wait_p95_ms": round(float(np.percentile(waits, 95)), 1) if finals else None,
            "partials_per_final": round(sum(r["partials"] for r in results) / max(1, finals), 2),
            "lag_max_s": round(max(r["lag"] for r in results), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streams", description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", nargs="+", default=["asr-default", "asr-whisper"])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--sentences", type=int, default=5, help="sentences in each stream's recording")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbone", default=str(REPO_ROOT / "models" / "whisper-base"))
    parser.add_argument("--store", default=str(REPO_ROOT / "adapters_store"))
    parser.add_argument("--name", default="streams")
    args = parser.parse_args(argv)
    audios = recordings(max(args.streams), args.sentences)
    port = free_port()
    command = server_command(Path(args.backbone), Path(args.store), port, "cpu",
                             "--max-streams", str(max(args.streams)))
    start, runs = machine_load(), []
    with started_processes([(command, {}, port)]):
        base = f"ws://127.0.0.1:{port}"
        asyncio.run(run_point(base, args.adapters[0], audios[:1]))  # warm-up: first calls, lazy loads
        for repeat in range(args.repeats):
            for adapter in round_robin(args.adapters, repeat):
                for streams in args.streams:
                    runs.append({**asyncio.run(run_point(base, adapter, audios[:streams])), "repeat": repeat})
                    print(json.dumps(runs[-1]), flush=True)
    note = load_note(start, machine_load())
    metrics = ["wait_p50_ms", "wait_p95_ms", "partials_per_final", "lag_max_s"]
    rows = median_rows(runs, ["adapter", "streams"], metrics)
    table = markdown_table(rows, ["adapter", "streams", "repeats", *[c for m in metrics for c in
                                                                      (m, f"{m}_min", f"{m}_max")]])
    write_results(args.name, {"runs": runs, "rows": rows, "load": note,
                              "recording": {"sentences": args.sentences, "pause_s": 1.0, "frame_ms": 20}},
                  f"{table}\n\n{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
