"""Translation on the server: ``POST /translate`` and OpenAI's ``POST /v1/audio/translations`` exist because the task
is registered, answer through a real app with a tiny translation set (a Whisper decoder that detects each clip's
language), give the same text in each of OpenAI's shapes with the detected language named, refuse what OpenAI's
translations route does not take, and answer OpenAI's own SDK against a real uvicorn process."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
import soundfile as sf

from clients import AsyncELPClient
from elp.whisper_languages import language_name
from tests.elp.test_long_form import speech_with_pauses
from tests.elp.test_translation_decoder import LANGUAGES, translation_set
from tests.server.helpers import (
    assert_error,
    clip_files,
    free_port,
    make_settings,
    metric,
    running_app,
    server_process,
    wav_bytes,
)

ROUTE = "/v1/audio/translations"
CLIP = wav_bytes(1.5, seed=21)


def _wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def whisper_store(tmp_path_factory, tiny_backbone_dir):
    """(tiny Whisper backbone, a store holding only the tiny translation set, under the default id)."""
    backbone = tiny_backbone_dir("whisper")
    store = tmp_path_factory.mktemp("translation") / "adapters"
    translation_set(backbone).save(store / "translate-whisper")
    return backbone, store


@pytest.mark.anyio
async def test_the_route_and_the_client_answer_the_translation_and_its_language(whisper_store, tmp_path) -> None:
    async with running_app(make_settings(*whisper_store, tmp_path)) as (app, client):
        response = await client.post("/translate", files=clip_files(CLIP))
        assert response.status_code == 200, response.text
        body = response.json()
        async with AsyncELPClient("http://elp.test", transport=httpx.ASGITransport(app=app)) as typed:
            answer = await typed.translate(CLIP)
        schema = (await client.get("/openapi.json")).json()
    assert body["text"] and body["adapter"].startswith("translate-whisper@")  # the tiny decoder writes something
    assert body["language"] in LANGUAGES and 0.0 < body["language_probability"] <= 1.0
    assert "segments" not in body and "words" not in body  # a clip read whole; a translation's words have no times
    assert (answer.text, answer.language, answer.language_probability) == (
        body["text"], body["language"], body["language_probability"])
    assert {"/translate", ROUTE} <= set(schema["paths"])


@pytest.mark.anyio
async def test_each_openai_shape_carries_the_translation_and_the_detected_language(whisper_store, tmp_path) -> None:
    async with running_app(make_settings(*whisper_store, tmp_path)) as (app, client):
        own = (await client.post("/translate", files=clip_files(CLIP))).json()
        plain = await client.post(ROUTE, files=clip_files(CLIP), data={"model": "whisper-1"})
        verbose = (await client.post(ROUTE, files=clip_files(CLIP), data={"response_format": "verbose_json"})).json()
        text = await client.post(ROUTE, files=clip_files(CLIP), data={"response_format": "text"})
        srt = (await client.post(ROUTE, files=clip_files(CLIP), data={"response_format": "srt"})).text
        vtt = (await client.post(ROUTE, files=clip_files(CLIP), data={"response_format": "vtt"})).text
        counted = metric(app, "elp_requests_total", {"endpoint": "openai_translations", "code": "200"})
    duration = round(own["duration_s"], 3)
    assert plain.status_code == 200, plain.text
    assert plain.json() == {"text": own["text"], "usage": {"type": "duration", "seconds": duration}}
    assert plain.headers["x-elp-adapter"] == own["adapter"]  # OpenAI's model name: the default set answered
    assert text.text == own["text"] + "\n"
    assert (verbose["task"], verbose["language"], verbose["text"]) == ("translate", language_name(own["language"]),
                                                                       own["text"])
    assert verbose["language"] != own["language"]  # OpenAI names the language ("french"), /translate codes it
    assert [(s["start"], s["end"], s["text"]) for s in verbose["segments"]] == [(0.0, duration, own["text"])]
    assert "words" not in verbose
    assert srt.split("\n")[2] == own["text"] and vtt.startswith("WEBVTT\n\n") and own["text"] in vtt  # one cue
    assert counted == 5


@pytest.mark.anyio
async def test_what_openai_translations_do_not_take_is_refused_or_absent(whisper_store, tmp_path) -> None:
    async with running_app(make_settings(*whisper_store, tmp_path)) as (_, client):
        diarized = await client.post(ROUTE, files=clip_files(CLIP), data={"response_format": "diarized_json"})
        other = await client.post(ROUTE, files=clip_files(CLIP), data={"response_format": "subtitles"})
        unknown = await client.post(ROUTE, files=clip_files(CLIP), data={"model": "no-such-set"})
        plain = (await client.post(ROUTE, files=clip_files(CLIP))).json()
        with_language = await client.post(ROUTE, files=clip_files(CLIP), data={"language": "de", "prompt": "hello"})
        schema = (await client.get("/openapi.json")).json()
    assert "response_format" in assert_error(diarized, 422, "invalid_request")["message"]  # transcriptions only
    assert "response_format" in assert_error(other, 422, "invalid_request")["message"]
    assert_error(unknown, 404, "adapter_not_found")
    assert with_language.json() == plain  # OpenAI's translations take no language: the field is not read
    forms = {name: set(schema["components"]["schemas"][name]["properties"]) for name in schema["components"]["schemas"]
             if name.startswith("Body_openai_")}
    [translations] = [fields for name, fields in forms.items() if "translations" in name]
    [transcriptions] = [fields for name, fields in forms.items() if "transcriptions" in name]
    assert translations == {"file", "model", "prompt", "response_format", "temperature"}  # OpenAI's own form
    assert {"language", "stream", "timestamp_granularities[]", "known_speaker_names[]"} <= transcriptions


@pytest.mark.anyio
async def test_silence_is_no_words_and_no_language(whisper_store, tmp_path) -> None:
    silence = _wav(np.zeros(16000 * 2, dtype=np.float32))
    async with running_app(make_settings(*whisper_store, tmp_path)) as (_, client):
        own = (await client.post("/translate", files=clip_files(silence))).json()
        verbose = (await client.post(ROUTE, files=clip_files(silence), data={"response_format": "verbose_json"})).json()
    assert own["text"] == "" and "language" not in own
    assert (verbose["text"], verbose["segments"], verbose["language"]) == ("", [], "english")  # OpenAI's documented


@pytest.mark.anyio
async def test_a_long_recording_is_translated_in_segments_each_with_its_language(whisper_store, tmp_path) -> None:
    clip, _ = speech_with_pauses(list(np.random.default_rng(4).uniform(2.0, 5.0, size=9)), seed=4)
    async with running_app(make_settings(*whisper_store, tmp_path)) as (_, client):
        own = (await client.post("/translate", files=clip_files(_wav(clip)))).json()
        verbose = (await client.post(ROUTE, files=clip_files(_wav(clip)),
                                     data={"response_format": "verbose_json"})).json()
    segments = own["segments"]
    assert len(segments) > 1 and all(s["language"] in LANGUAGES for s in segments)
    seconds = {code: sum(s["end_s"] - s["start_s"] for s in segments if s["language"] == code) for code in LANGUAGES}
    assert own["language"] == max(seconds, key=seconds.__getitem__)  # the language of most of the speech
    assert own["text"] == " ".join(s["text"] for s in segments if s["text"])
    assert [(s["start"], s["end"], s["text"]) for s in verbose["segments"]] == [
        (s["start_s"], s["end_s"], s["text"]) for s in segments]


@pytest.mark.anyio
async def test_models_list_the_translation_sets_and_whisper_1_names_the_default(whisper_store, tmp_path) -> None:
    async with running_app(make_settings(*whisper_store, tmp_path)) as (_, client):
        listing = (await client.get("/v1/models")).json()["data"]
        alias = (await client.get("/v1/models/whisper-1")).json()
    assert [(m["id"], m["task"], m["default"]) for m in listing] == [("translate-whisper", "translation", True)]
    assert alias["alias_of"] == "translate-whisper"  # no ASR set here: the name is the translation default's


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK's: OpenAI retires whisper-1 in 2027
def test_the_openai_sdk_translates_through_a_real_server(whisper_store, tmp_path) -> None:
    """OpenAI's own Python SDK against ``python -m server`` under uvicorn: ``client.audio.translations.create`` in
    each shape, and an unsupported format raised as the SDK's own error with this server's body."""
    import openai

    port = free_port()
    backbone, store = whisper_store
    args = ["python", "-m", "server", "--backbone", str(backbone), "--adapters-dir", str(store), "--speakers-dir",
            str(tmp_path / "speakers"), "--port", str(port), "--log-level", "warning"]
    clip = tmp_path / "clip.wav"
    clip.write_bytes(CLIP)
    with server_process(args, port=port):
        base = f"http://127.0.0.1:{port}"
        own = httpx.post(f"{base}/translate", files=clip_files(CLIP), timeout=60).json()
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=60)
        with clip.open("rb") as audio:
            plain = client.audio.translations.create(model="whisper-1", file=audio)
        with clip.open("rb") as audio:
            verbose = client.audio.translations.create(model="translate-whisper", file=audio,
                                                       response_format="verbose_json")
        with clip.open("rb") as audio:
            text = client.audio.translations.create(model="whisper-1", file=audio, response_format="text")
        with clip.open("rb") as audio, pytest.raises(openai.UnprocessableEntityError) as refused:
            client.audio.translations.create(model="whisper-1", file=audio, response_format="diarized_json")
    assert plain.text == own["text"] and own["text"]
    assert (verbose.text, verbose.language) == (own["text"], language_name(own["language"]))
    assert verbose.segments and verbose.segments[0].text == own["text"]
    assert text.strip() == own["text"]
    error = refused.value.response.json()  # this server's error body, which the SDK raised as its own error
    assert set(error) == {"error"} and error["error"]["code"] == "invalid_request"


@pytest.mark.anyio
async def test_the_translation_default_loads_on_first_use_not_at_start(whisper_store, tmp_path) -> None:
    """A ~200 MB decoder most deployments never call: the server is ready without it resident and unpinned, and
    the first request loads it like any other set."""
    async with running_app(make_settings(*whisper_store, tmp_path)) as (app, client):
        service = app.state.service
        await service.warmed()
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert service.defaults["translation"] == "translate-whisper"
        assert service.cache.resident("translate-whisper") is None
        response = await client.post("/translate", files=clip_files(CLIP))
        assert response.status_code == 200, response.text
        assert service.cache.resident("translate-whisper") is not None
        assert "translate-whisper" not in service.cache.pinned


@pytest.mark.anyio
async def test_two_sets_sharing_a_decoder_count_it_once_in_the_cache_budget(whisper_store, tmp_path) -> None:
    """Sets with the same decoder weights (asr-whisper and translate-whisper after setup) hold one decoder
    (``elp.shared_decoders``); the cache's resident bytes, which the budget and the gauge read, count it once."""
    import shutil

    backbone, source = whisper_store
    store = tmp_path / "adapters"
    shutil.copytree(source, store)
    shutil.copytree(source / "translate-whisper", store / "translate-copy")
    async with running_app(make_settings(backbone, store, tmp_path)) as (app, client):
        for adapter in ("translate-whisper", "translate-copy"):
            response = await client.post(f"/translate?adapter={adapter}", files=clip_files(CLIP))
            assert response.status_code == 200, response.text
        cache = app.state.service.cache
        first, second = cache.resident("translate-whisper"), cache.resident("translate-copy")
        assert first.size_bytes == second.size_bytes and sum(first.storages.values()) == first.size_bytes
        decoder = set(first.storages) & set(second.storages)
        decoder_bytes = sum(first.storages[address] for address in decoder)
        assert 0 < decoder_bytes < first.size_bytes  # the decoder (the set's own silence frames are apart)
        assert cache.resident_bytes == first.size_bytes + second.size_bytes - decoder_bytes
        assert metric(app, "elp_resident_adapter_bytes") == cache.resident_bytes
