"""Benchmark: how soon the first words of a long recording reach the client, streamed (OpenAI's ``stream=true`` on
``POST /v1/audio/transcriptions``: each segment's text as it is read) or answered whole (``POST /asr``).

One server (the shipped sets, the embedded backbone) and one recording of ``--seconds`` of corpus test speech
joined with pauses (cut into segments by the server). Rounds interleave the two ways, a different one first each
round; reported: the median over rounds (min-max) of the seconds to the first text and to the whole text, and the
ratio first-text / whole in the same run.

    python -m benchmarks.first_text [--seconds 240] [--rounds 3] [--adapters-dir adapters_store]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx

from benchmarks.common import REPO_ROOT, corpus_clips, free_port, markdown_table, started_processes, write_results
from benchmarks.stats import load_note, machine_load, round_robin, spread


def streamed(client: httpx.Client, data: bytes) -> tuple[float, float, str]:
    """(s to the first delta, s to the done event, the done event's text)."""
    started, first = time.perf_counter(), None
    with client.stream("POST", "/v1/audio/transcriptions", files={"file": ("long.wav", data, "audio/wav")},
                       data={"stream": "true", "model": "asr-default"}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[len("data: "):])
            if event["type"] == "transcript.text.delta" and first is None:
                first = time.perf_counter() - started
            if event["type"] == "transcript.text.done":
                whole = time.perf_counter() - started
                return first if first is not None else whole, whole, event["text"]
            if event["type"] == "error":
                raise RuntimeError(event["error"])
    raise RuntimeError("the stream ended without a done event")


def whole(client: httpx.Client, data: bytes) -> tuple[float, float, str]:
    started = time.perf_counter()
    response = client.post("/asr", files={"file": ("long.wav", data, "audio/wav")})
    response.raise_for_status()
    elapsed = time.perf_counter() - started
    return elapsed, elapsed, response.json()["text"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=240.0, help="length of the recording (at most 300)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backbone", type=Path, default=REPO_ROOT / "models" / "whisper-base")
    parser.add_argument("--adapters-dir", type=Path, default=REPO_ROOT / "adapters_store")
    args = parser.parse_args(argv)
    [recording] = corpus_clips(1, seed=0, min_s=args.seconds, max_s=args.seconds)
    port = free_port()
    command = [sys.executable, "-m", "server", "--backbone", str(args.backbone), "--adapters-dir",
               str(args.adapters_dir), "--port", str(port), "--log-level", "warning"]
    systems = {"streamed (stream=true)": streamed, "whole (/asr)": whole}
    runs, start = [], machine_load()
    with started_processes([(command, {}, port)]), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        whole(client, recording.data)  # warm-up: first batches, the search compiled
        for turn in range(args.rounds):
            texts = {}
            for name in round_robin(list(systems), turn):
                first_s, whole_s, texts[name] = systems[name](client, recording.data)
                runs.append({"system": name, "round": turn, "first_text_s": first_s, "whole_text_s": whole_s})
            if len(set(texts.values())) != 1:
                raise RuntimeError(f"the two ways answered different texts: {texts}")
    end = machine_load()
    rows = []
    for name in systems:
        first = spread([run["first_text_s"] for run in runs if run["system"] == name])
        done = spread([run["whole_text_s"] for run in runs if run["system"] == name])
        rows.append({"system": name, "first text s": f"{first['median']:.2f} ({first['min']:.2f}-{first['max']:.2f})",
                     "whole text s": f"{done['median']:.2f} ({done['min']:.2f}-{done['max']:.2f})",
                     "first / whole": round(first["median"] / done["median"], 3)})
    title = (f"First text of a {recording.duration_s:.0f} s recording, {args.rounds} rounds interleaved; "
             f"{load_note(start, end)}")
    table = f"{title}\n\n" + markdown_table(rows, ["system", "first text s", "whole text s", "first / whole"])
    print(table)
    write_results("first_text", {"command": " ".join(sys.argv), "recording_s": recording.duration_s,
                                 "runs": runs, "rows": rows, "load": [start, end]}, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
