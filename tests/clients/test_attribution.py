"""Who said what: words given to the speaker turns they overlap, joined into lines; the client's method sends both
requests of one recording and puts their answers together (against the real app)."""

from __future__ import annotations

import httpx
import pytest

from clients import AsyncELPClient
from clients.attribution import attribute, speaker_of
from clients.cli import main as cli_main
from tests.server.helpers import make_settings, running_app
from tests.server.test_diarize_route import conversation, wav

TURNS = [{"start_s": 0.5, "end_s": 3.0, "speaker": "speaker_1"}, {"start_s": 3.4, "end_s": 6.0, "speaker": "speaker_2"},
         {"start_s": 9.0, "end_s": 10.0, "speaker": "speaker_1"}]


def word(text: str, start: float, end: float) -> dict:
    return {"word": text, "start_s": start, "end_s": end, "confidence": 1.0}


def test_a_word_goes_to_the_turn_it_overlaps_most_or_the_nearest_one() -> None:
    assert speaker_of(word("a", 2.8, 3.5), TURNS) == "speaker_1"  # 0.2 s in the first turn, 0.1 s in the second
    assert speaker_of(word("b", 2.9, 3.8), TURNS) == "speaker_2"
    assert speaker_of(word("c", 6.5, 6.8), TURNS) == "speaker_2"  # in a pause: the nearest turn
    assert speaker_of(word("d", 8.0, 8.5), TURNS) == "speaker_1"
    assert speaker_of(word("e", 1.0, 1.2), []) is None


def test_lines_change_with_the_speaker_and_after_a_long_pause() -> None:
    words = [word("hello", 0.6, 1.0), word("there", 1.1, 1.5), word("hi", 3.5, 3.8), word("you", 4.0, 4.3),
             word("again", 9.1, 9.5)]
    assert attribute(words, TURNS) == [
        {"speaker": "speaker_1", "start_s": 0.6, "end_s": 1.5, "text": "hello there"},
        {"speaker": "speaker_2", "start_s": 3.5, "end_s": 4.3, "text": "hi you"},
        {"speaker": "speaker_1", "start_s": 9.1, "end_s": 9.5, "text": "again"}]
    same = [word("one", 0.6, 0.9), word("two", 2.5, 2.6)]  # a 1.6 s pause
    assert len(attribute(same, TURNS)) == 1 and len(attribute(same, TURNS, line_pause_s=1.0)) == 2
    monologue = [word(f"w{k}", 0.6 + 0.5 * k, 0.9 + 0.5 * k) for k in range(5)]  # 0.6-2.9 s
    assert [line["text"] for line in attribute(monologue, TURNS, max_line_s=1.0)] == ["w0 w1 w2", "w3 w4"]


@pytest.mark.anyio
async def test_the_client_puts_the_two_answers_together(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path)
    recording = wav(conversation())
    async with running_app(settings) as (app, _), \
            AsyncELPClient("http://elp.test", transport=httpx.ASGITransport(app=app)) as client:
        lines = await client.who_said_what(recording, num_speakers=2)
        diarized = await client.diarize(recording, num_speakers=2)
        transcribed = await client.asr(recording)
    assert lines and lines == attribute(transcribed.words or [], diarized.turns)
    assert " ".join(line["text"] for line in lines).split() == [w["word"] for w in transcribed.words or []]


def test_the_cli_command_reports_a_set_without_word_times(tmp_path, capsys) -> None:
    path = tmp_path / "talk.wav"
    path.write_bytes(wav(conversation()[:16000]))

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/diarize":
            return httpx.Response(200, json={"speaker_count": 1, "speakers": [], "turns": TURNS, "windows": 3,
                                             "adapter": "v@x", "duration_s": 1.0, "timings_ms": {}})
        return httpx.Response(200, json={"text": "hi", "adapter": "asr-x@1", "duration_s": 1.0, "timings_ms": {}})

    assert cli_main(["who-said-what", str(path)], transport=httpx.MockTransport(answer)) == 2
    assert "gives no word times" in capsys.readouterr().err
