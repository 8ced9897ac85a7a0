"""``elp-client``: the server from the shell.

    elp-client asr clip.wav
    elp-client --subtitles srt asr talk.flac > talk.srt   # word times as subtitles (srt, vtt)
    elp-client diarize meeting.flac --num-speakers 3      # who spoke when (JSON); --rttm before it: RTTM lines
    elp-client who-said-what meeting.flac                 # the words by speaker: /diarize and /asr together
    elp-client who-said-what meeting.flac --name-speakers # ... under enrolled speakers' ids where they match (key)
    elp-client verify a.wav b.wav            # or: elp-client verify a.wav --speaker alice
    elp-client identify clip.wav --top-k 5   # which enrolled speaker is this (the key)
    elp-client emotion clip.wav --adapter emotion-alt
    elp-client intent clip.wav
    elp-client asr talk.wav --stream         # a live stream: JSON lines, partial answers and one result an utterance
    elp-client enroll alice a1.wav a2.wav ; elp-client speakers ; elp-client delete-speaker alice
    elp-client adapters ; elp-client load ID ; elp-client unload ID ; elp-client ready

Server URL from ``--url`` or ``ELP_SERVER_URL``; admin key from ``--api-key`` or ``ELP_API_KEY``.
Prints JSON; exits 1 on an error answer (printed to stderr as the server's error body).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import httpx
from websockets.exceptions import WebSocketException

from clients.client import DEFAULT_URL, ELPClient
from clients.errors import ELPClientError
from clients.subtitles import FORMATS, to_rttm
from elp.tasks import TASKS, TaskSpec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elp-client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("ELP_SERVER_URL", DEFAULT_URL), help="server base URL")
    parser.add_argument("--api-key", default=os.environ.get("ELP_API_KEY"), help="admin API key")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--subtitles", choices=sorted(FORMATS),
                        help="print an answer's word times (`words`, e.g. /asr) as subtitles, not JSON")
    parser.add_argument("--rttm", action="store_true",
                        help="print an answer's speaker turns (`turns`, /diarize) as RTTM lines, not JSON")
    commands = parser.add_subparsers(dest="command", required=True)

    for spec in TASKS:  # one command per registered task: its clip(s), its fields, --adapter
        sub = commands.add_parser(spec.endpoint, help=spec.summary)
        sub.add_argument("clip")
        for clip in spec.extra_clips:
            optional = spec.enrolled_reference is not None and spec.enrolled_reference.instead_of == clip.name
            sub.add_argument(clip.name, nargs="?" if optional else None, help=clip.description)
        if spec.enrolled_reference is not None:
            sub.add_argument(f"--{spec.enrolled_reference.field}", help=spec.enrolled_reference.description)
        for option in spec.options:
            if option.kind is bool:  # a switch: sent (true) only when given
                sub.add_argument(option.flag, dest=option.name, action="store_const", const=True,
                                 help=option.description)
            else:
                sub.add_argument(option.flag, dest=option.name, type=option.kind, help=option.description)
        sub.add_argument("--adapter", help="adapter id (default: the task's default)")
        if spec.streams:
            sub.add_argument("--stream", action="store_true",
                             help="send the clip as a live stream at the pace of speech; print each message as "
                             "one JSON line (partial answers as they grow, one result per utterance)")
    sub = commands.add_parser("who-said-what", help="a recording's words by speaker (/diarize and /asr together)")
    sub.add_argument("clip")
    sub.add_argument("--num-speakers", type=int, help="the number of speakers, when known")
    sub.add_argument("--speaker-adapter", help="verification set for the speakers (default: /diarize's)")
    sub.add_argument("--asr-adapter", help="ASR set for the words (default: /asr's)")
    sub.add_argument("--name-speakers", action="store_const", const=True,
                     help="name the speakers who match enrolled ones (the API key)")
    sub = commands.add_parser("enroll", help="enrol a speaker from one or more clips")
    sub.add_argument("speaker")
    sub.add_argument("clips", nargs="+")
    sub.add_argument("--adapter")
    commands.add_parser("speakers", help="list enrolled speakers")
    sub = commands.add_parser("delete-speaker", help="forget an enrolled speaker")
    sub.add_argument("speaker")
    commands.add_parser("adapters", help="list adapter sets")
    for name, text in (("load", "bring an adapter set into memory"), ("unload", "drop an adapter set from memory")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("adapter_id")
    commands.add_parser("health", help="liveness")
    commands.add_parser("ready", help="readiness report")
    return parser


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: v for k, v in dataclasses.asdict(value).items() if k != "raw"}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def run(args: argparse.Namespace, client: ELPClient) -> Any:
    command = args.command
    spec = next((spec for spec in TASKS if spec.endpoint == command), None)
    if spec is not None:
        return run_task(spec, args, client)
    if command == "who-said-what":
        return client.who_said_what(args.clip, num_speakers=args.num_speakers, speaker_adapter=args.speaker_adapter,
                                    asr_adapter=args.asr_adapter, name_speakers=args.name_speakers)
    if command == "enroll":
        return client.enroll_speaker(args.speaker, args.clips, adapter=args.adapter)
    if command == "speakers":
        return client.speakers()
    if command == "delete-speaker":
        return {"speaker": args.speaker, "deleted": client.delete_speaker(args.speaker)}
    if command == "adapters":
        return client.adapters()
    if command == "load":
        return client.load_adapter(args.adapter_id)
    if command == "unload":
        return client.unload_adapter(args.adapter_id)
    if command == "health":
        return {"healthy": client.health()}
    if command == "ready":
        return client.ready()
    raise SystemExit(f"unknown command {command}")  # pragma: no cover - argparse refuses first


def run_task(spec: TaskSpec, args: argparse.Namespace, client: ELPClient) -> Any:
    """A task command: its clips and fields as parsed, the answer's full JSON."""
    clips = [getattr(args, clip.name) for clip in spec.extra_clips]
    fields = {}
    reference = spec.enrolled_reference
    if reference is not None:
        fields[reference.field] = getattr(args, reference.field)
        if (getattr(args, reference.instead_of) is None) == (fields[reference.field] is None):
            raise SystemExit(f"{spec.endpoint} needs a {reference.instead_of} clip or --{reference.field}, not both")
    fields.update({option.name: getattr(args, option.name) for option in spec.options
                   if getattr(args, option.name) is not None})
    return client.task(spec.endpoint, args.clip, *clips, adapter=args.adapter, **fields).raw


def main(argv: Sequence[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with ELPClient(args.url, api_key=args.api_key, timeout=args.timeout, transport=transport) as client:
            if getattr(args, "stream", False):
                for message in client.stream(args.command, args.clip, adapter=args.adapter, realtime=True):
                    print(json.dumps(message, sort_keys=True), flush=True)
                return 0
            result = run(args, client)
    except ELPClientError as exc:
        print(json.dumps({"error": {"code": exc.code, "message": exc.message}, "status": exc.status}),
              file=sys.stderr)
        return 1
    except (httpx.HTTPError, OSError, WebSocketException, ValueError) as exc:
        print(f"elp-client: {exc}", file=sys.stderr)
        return 2
    if args.subtitles:
        words = result.get("words") if isinstance(result, dict) else None
        if words is None:
            print("elp-client: this answer has no word times for --subtitles", file=sys.stderr)
            return 2
        sys.stdout.write(FORMATS[args.subtitles](words))
        return 0
    if args.rttm:
        turns = result.get("turns") if isinstance(result, dict) else None
        if turns is None:
            print("elp-client: this answer has no speaker turns for --rttm", file=sys.stderr)
            return 2
        sys.stdout.write(to_rttm(turns, os.path.splitext(os.path.basename(args.clip))[0]))
        return 0
    print(json.dumps(_jsonable(result), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
