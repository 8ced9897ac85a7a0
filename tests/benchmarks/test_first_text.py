"""benchmarks.first_text reads OpenAI's server-sent events as the SDKs do: the first delta's time, the done event's
text, and an error event as a failure."""

from __future__ import annotations

import httpx
import pytest

from benchmarks.first_text import streamed


def client_answering(body: bytes) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        assert b'name="stream"\r\n\r\ntrue' in request.read()
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return httpx.Client(transport=httpx.MockTransport(handler), base_url="http://elp.test")


def test_the_first_delta_and_the_done_text_are_read() -> None:
    body = (b'data: {"type":"transcript.text.delta","delta":"turn on"}\n\n'
            b'data: {"type":"transcript.text.delta","delta":" the lights"}\n\n'
            b'data: {"type":"transcript.text.done","text":"turn on the lights"}\n\n')
    first, whole, text = streamed(client_answering(body), b"RIFF")
    assert 0 <= first <= whole and text == "turn on the lights"


def test_an_error_event_fails_the_run() -> None:
    body = b'data: {"type":"error","error":{"code":"timeout","message":"no answer"}}\n\n'
    with pytest.raises(RuntimeError, match="timeout"):
        streamed(client_answering(body), b"RIFF")
