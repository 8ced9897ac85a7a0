"""Real processes on loopback: the server under uvicorn (``python -m server``), a real Prometheus
scraping it, and graceful shutdown with requests in flight."""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.server.helpers import free_port, server_process, wait_http, wav_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIP = wav_bytes(1.0, seed=3)


def server_args(backbone: Path, store: Path, tmp: Path, port: int, *extra: str) -> list[str]:
    return ["python", "-m", "server", "--backbone", str(backbone), "--adapters-dir", str(store),
            "--speakers-dir", str(tmp / "speakers"), "--port", str(port), "--log-level", "warning", *extra]


@pytest.fixture(scope="module")
def live_server(tiny_store, tmp_path_factory):
    """One uvicorn server process for the module: (base_url, process)."""
    port = free_port()
    tmp = tmp_path_factory.mktemp("live")
    with server_process(server_args(*tiny_store, tmp, port, "--api-key", "k3y"), port=port) as process:
        yield f"http://127.0.0.1:{port}", process


def test_every_endpoint_over_loopback(live_server) -> None:
    base, _ = live_server
    with httpx.Client(base_url=base, timeout=30) as client:
        files = {"file": ("clip.wav", CLIP, "audio/wav")}
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json()["ready"] is True
        assert isinstance(client.post("/asr", files=files).json()["text"], str)
        assert client.post("/emotion", files=files).json()["label"]
        assert client.post("/intent", files=files).json()["intent"]
        verify = client.post("/verify", files={**files, "reference": ("r.wav", wav_bytes(1.1, seed=4))}).json()
        assert -1 <= verify["score"] <= 1
        assert len(client.get("/adapters").json()) == 5
        assert client.post("/adapters/emotion-alt/load").status_code == 401
        assert client.post("/adapters/emotion-alt/load", headers={"X-API-Key": "k3y"}).json()["resident"] is True
        assert client.delete("/adapters/emotion-alt/resident",
                             headers={"Authorization": "Bearer k3y"}).json()["resident"] is False
        enrolled = client.post("/speakers/carol", files=files, headers={"X-API-Key": "k3y"})
        assert enrolled.status_code == 200
        assert client.post("/verify", files=files, data={"speaker": "carol"}).status_code == 401
        against = client.post("/verify", files=files, data={"speaker": "carol"}, headers={"X-API-Key": "k3y"}).json()
        assert against["speaker"] == "carol" and against["score"] == round(against["score"], 2)
        assert client.get("/speakers").status_code == 401
        assert [s["speaker"] for s in client.get("/speakers", headers={"X-API-Key": "k3y"}).json()] == ["carol"]
        assert client.delete("/speakers/carol", headers={"X-API-Key": "k3y"}).json()["deleted"] == 1
        error = client.post("/asr", files={"file": ("x.wav", b"nope")})
        assert error.status_code == 400 and error.json()["error"]["code"] == "invalid_audio"
        assert "elp_requests_total" in client.get("/metrics").text
        assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200


def test_the_openai_sdk_transcribes_through_the_server(live_server, tmp_path) -> None:
    """OpenAI's own Python SDK, pointed at the server by its base URL alone, as users of tools written for
    OpenAI's "Whisper API" would: every answer shape, the model listing, and a refusal as the SDK's error."""
    import openai

    base, _ = live_server
    clip = tmp_path / "clip.wav"
    clip.write_bytes(CLIP)
    with httpx.Client(base_url=base, timeout=30) as http:
        asr = http.post("/asr", files={"file": ("clip.wav", CLIP, "audio/wav")}).json()
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k3y", max_retries=0, timeout=60)
    with clip.open("rb") as audio:
        plain = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert plain.text == asr["text"]
    with clip.open("rb") as audio:
        verbose = client.audio.transcriptions.create(model="asr-default", file=audio, response_format="verbose_json",
                                                     timestamp_granularities=["word", "segment"])
    assert (verbose.text, verbose.language) == (asr["text"], "english")
    assert [w.word for w in verbose.words or []] == [w["word"] for w in asr.get("words", [])]
    assert all(s.end <= verbose.duration + 1e-3 for s in verbose.segments or [])
    with clip.open("rb") as audio:
        events = list(client.audio.transcriptions.create(model="gpt-4o-transcribe", file=audio, stream=True))
    assert events[-1].type == "transcript.text.done" and events[-1].text == asr["text"]
    assert "".join(e.delta for e in events[:-1]) == asr["text"]
    with clip.open("rb") as audio:
        srt = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt")
    assert isinstance(srt, str) and (srt == "" or srt.startswith("1\n00:00:"))
    reference = "data:audio/wav;base64," + base64.b64encode(CLIP).decode()
    with clip.open("rb") as audio:
        diarized = client.audio.transcriptions.create(
            model="gpt-4o-transcribe-diarize", file=audio, response_format="diarized_json",
            known_speaker_names=["carol"], known_speaker_references=[reference],
            extra_body={"chunking_strategy": "auto"})
    assert diarized.text == asr["text"] and all(s.type == "transcript.text.segment" for s in diarized.segments)
    assert " ".join(s.text for s in diarized.segments) == " ".join(w["word"] for w in asr.get("words", []))
    assert {s.speaker for s in diarized.segments} <= {"carol", "A"}  # the clip is its own reference
    assert [m.id for m in client.models.list()] == ["asr-default"]
    assert client.models.retrieve("whisper-1").alias_of == "asr-default"  # tools look the name up first
    with clip.open("rb") as audio, pytest.raises(openai.UnprocessableEntityError) as refused:
        client.audio.transcriptions.create(model="whisper-1", file=audio, language="de")
    assert "English" in str(refused.value)
    with clip.open("rb") as audio, pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="emotion-default", file=audio)


def test_prometheus_scrapes_the_request_counters(live_server, tmp_path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the Debian 'prometheus' binary is not installed (apt-get install prometheus)")
    base, _ = live_server
    target = base.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: elp\n    static_configs:\n      - targets: ['{target}']\n"
    )
    prom_port = free_port()
    with httpx.Client(base_url=base, timeout=30) as client:
        before = _counter(client.get("/metrics").text, 'elp_requests_total{code="200",endpoint="emotion"}')
        for _ in range(3):
            assert client.post("/emotion", files={"file": ("c.wav", CLIP)}).status_code == 200
    expected = before + 3
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_http(f"http://127.0.0.1:{prom_port}/-/ready", process, 30)
        query = 'elp_requests_total{endpoint="emotion",code="200"}'
        deadline, value = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            answer = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": query}).json()
            results = answer["data"]["result"]
            if results:
                value = float(results[0]["value"][1])
                if value >= expected:
                    break
            time.sleep(0.5)
        assert value == expected, f"prometheus saw {value}, expected {expected}"
        targets = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/targets").json()["data"]["activeTargets"]
        assert targets[0]["health"] == "up"
    finally:
        process.terminate()
        process.wait(timeout=20)


def _queue_depth(port: int) -> float:
    return _counter(httpx.get(f"http://127.0.0.1:{port}/metrics").text, "elp_queue_depth")


def _counter(exposition: str, series: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_graceful_shutdown_answers_or_refuses_every_queued_request(tiny_store) -> None:
    port = free_port()
    tmp = Path(tempfile.mkdtemp())
    # batches always wait 5 s for company: every request sits in the queue when SIGTERM arrives
    args = server_args(*tiny_store, tmp, port, "--max-wait-ms", "5000", "--batch-wait", "always",
                       "--max-batch-size", "64")
    with server_process(args, port=port) as process:
        url = f"http://127.0.0.1:{port}/emotion"

        def send(_: int) -> int:
            try:
                return httpx.post(url, files={"file": ("c.wav", CLIP)}, timeout=30).status_code
            except httpx.HTTPError:
                return -1

        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(send, i) for i in range(12)]
            # SIGTERM once every request is queued (none still uploading), not after a guessed pause
            deadline = time.monotonic() + 30
            while _queue_depth(port) + sum(f.done() for f in futures) < len(futures) and time.monotonic() < deadline:
                time.sleep(0.02)  # polling another process's /metrics: there is no event to wait on
            assert _queue_depth(port) >= 1, "every request was answered before SIGTERM"
            process.send_signal(signal.SIGTERM)
            statuses = [f.result(timeout=60) for f in futures]
        # uvicorn re-raises the captured SIGTERM after its graceful shutdown: -15 is a clean exit
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert all(status in (200, 503) for status in statuses), statuses
    assert statuses.count(200) >= 1
