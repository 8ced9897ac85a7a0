"""Subtitles from word times: cues end at pauses, at the character and duration limits; SRT and WebVTT
clocks; the CLI prints them for an answer with words and refuses one without."""

from __future__ import annotations

import httpx
import pytest

from clients.cli import main as cli_main
from clients.subtitles import cues, to_srt, to_webvtt


def word(text: str, start: float, end: float) -> dict:
    return {"word": text, "start_s": start, "end_s": end, "confidence": 0.9}


WORDS = [word("turn", 0.08, 0.3), word("on", 0.34, 0.42), word("the", 0.48, 0.56), word("lights", 0.62, 0.94),
         word("please", 2.0, 2.4)]  # a pause of 1.06 s before "please"


def test_a_pause_ends_a_cue() -> None:
    assert [c.text for c in cues(WORDS)] == ["turn on the lights", "please"]
    assert (cues(WORDS)[0].start_s, cues(WORDS)[0].end_s) == (0.08, 0.94)


def test_characters_and_seconds_end_a_cue() -> None:
    assert [c.text for c in cues(WORDS, max_chars=10)] == ["turn on", "the lights", "please"]
    assert [c.text for c in cues(WORDS, max_gap_s=5.0, max_s=1.0)] == ["turn on the lights", "please"]
    assert [c.text for c in cues(WORDS, max_gap_s=5.0)] == ["turn on the lights please"]
    assert cues([]) == []


def test_srt_and_webvtt_clocks() -> None:
    late = [word("hello", 3723.0456, 3724.5)]  # 1 h 2 min 3.046 s
    assert to_srt(late) == "1\n01:02:03,046 --> 01:02:04,500\nhello\n\n"
    assert to_webvtt(late) == "WEBVTT\n\n01:02:03.046 --> 01:02:04.500\nhello\n\n"
    assert to_srt(WORDS).startswith("1\n00:00:00,080 --> 00:00:00,940\nturn on the lights\n\n2\n00:00:02,000")


def asr_server(words: list | None) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        body = {"text": "turn on the lights please", "adapter": "asr-default@x", "duration_s": 2.5, "timings_ms": {}}
        return httpx.Response(200, json=body | ({"words": words} if words is not None else {}))
    return httpx.MockTransport(answer)


@pytest.mark.parametrize("fmt, first_line", [("srt", "1"), ("vtt", "WEBVTT")])
def test_the_cli_prints_subtitles(tmp_path, capsys, fmt: str, first_line: str) -> None:
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"RIFF")  # never decoded: the transport answers
    assert cli_main(["--subtitles", fmt, "asr", str(clip)], transport=asr_server(WORDS)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == first_line and "turn on the lights" in out and "please" in out


def test_the_cli_refuses_subtitles_for_an_answer_without_words(tmp_path, capsys) -> None:
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"RIFF")
    assert cli_main(["--subtitles", "srt", "asr", str(clip)], transport=asr_server(None)) == 2
    assert "no word times" in capsys.readouterr().err
