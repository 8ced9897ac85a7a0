"""``/asr`` with a set that rescores its beam (elp.decoding.rescoring), through the app: with ``asr_rescoring``
(``ELP_ASR_RESCORING``) the answer is the second pass's where the setting runs it, else the beam's best, and the set on
disk is not rewritten.
The tiny checkpoint has no BPE tokenizer, so its decoder is built here and stands in for ``checkpoint_rescorer``."""

from __future__ import annotations

import logging

import pytest
import torch
from pydantic import ValidationError

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.decoding import WordBigramLM
from elp.decoding.config import RescoringConfig
from elp.decoding.rescoring import DecoderRescorer
from elp.tasks.asr import rescoring_mode
from elp.testing import tiny_rescorer
from server.__main__ import settings_from_args
from server.settings import Settings
from tests.server.helpers import build_store, make_settings, running_app, wav_bytes

WORDS = ["on", "off", "the", "light", "door", "open", "a", "no", "one"]


@pytest.fixture(scope="module")
def whisper_store(tmp_path_factory, tiny_backbone_dir):
    """A store on the tiny Whisper checkpoint whose asr-default has an LM and a heavy second pass."""
    backbone_dir, store = build_store(tmp_path_factory.mktemp("whisper-store"), tiny_backbone_dir("whisper"))
    asr = AdapterSet.load(store / "asr-default")
    asr.attach_language_model(WordBigramLM.build([" ".join(WORDS)], {w: 1.0 for w in WORDS}, alpha=0.5, beta=1.0,
                                                 beam_width=16, temperature=3.0))
    variants = {"float32": {"nbest": 3, "weight": 5.0}, "float32@int8": {"nbest": 5, "weight": 2.0}}
    asr.config.rescoring = RescoringConfig(weight=50.0, nbest=8, by_precision=variants)
    asr.save(store / "asr-default")
    return backbone_dir, store


@pytest.fixture(scope="module")
def rescorer(whisper_store) -> DecoderRescorer:
    return tiny_rescorer(whisper_store[0])


CLIPS = [wav_bytes(1.0 + 0.4 * i, seed=i) for i in range(4)]


def expected_answers(whisper_store, rescoring: str | None, dtype: str = "float32") -> list[str]:
    """What the library answers for CLIPS (the same decoding of the upload as the server's) on the encoder in
    ``dtype``, its second pass in ``rescoring`` precision (None: off)."""
    import io

    import soundfile

    backbone_dir, store = whisper_store
    model = MultiAdapterModel(load_backbone(backbone_dir, quantization=None if dtype == "float32" else dtype))
    adapter_set = AdapterSet.load(store / "asr-default")
    if rescoring is None:
        adapter_set.config.rescoring = None
    else:
        adapter_set.rescorer_dtype, adapter_set.rescorer_encoder = rescoring, dtype
    adapter_set.refresh_post_processor()
    model.add_adapter_set("asr-default", adapter_set)
    waves = [torch.from_numpy(soundfile.read(io.BytesIO(clip), dtype="float32")[0]) for clip in CLIPS]
    return [answer.text for answer in model.predict(waves, ["asr-default"] * len(waves))]


def test_the_sets_settings_answer_differently_so_reading_the_wrong_one_shows(whisper_store, rescorer, monkeypatch):
    """The route test below tells the settings apart by their answers: each gives other transcripts here."""
    monkeypatch.setattr("elp.decoding.rescoring.checkpoint_rescorer", lambda source, dtype="float32": rescorer)
    answers = {tuple(expected_answers(whisper_store, precision, encoder))
               for precision, encoder in [("bfloat16", "int8"), ("float32", "float32"), ("float32", "int8")]}
    assert len(answers) == 3


@pytest.mark.anyio
@pytest.mark.parametrize(("native", "dtype", "cpu_class"), [
    ("bfloat16", "int8", "avx512-vnni"), ("float32", "int8", "other"), ("float32", "int8", "avx512-vnni"),
    ("float32", "float32", "avx2"), ("float32", "float32", "avx512-vnni")])
async def test_asr_answers_the_second_pass_as_the_setting_says(whisper_store, rescorer, tmp_path, monkeypatch,
                                                              native, dtype, cpu_class) -> None:
    """true: the second pass; false: the beam's best; auto (the default): the second pass where this CPU runs its
    decoder in bfloat16 natively (``native``), or in float32 beside the encoder (``dtype``) measured to fit on this
    CPU class, with the set's setting for that precision and encoder (bfloat16: 8 transcripts at weight 50; float32:
    3 at weight 5; float32 beside int8: 5 at weight 2)."""
    monkeypatch.setattr("elp.decoding.rescoring.checkpoint_rescorer", lambda source, dtype="float32": rescorer)
    monkeypatch.setattr("elp.decoding.rescoring.native_dtype", lambda: native)
    monkeypatch.setattr("elp.backbones.quantize.cpu_kernel_class", lambda: cpu_class)
    backbone_dir, store = whisper_store
    on_disk = (store / "asr-default" / "adapter_config.json").read_bytes()
    served = {}
    for rescoring in ("true", "false", None):  # None: the default, auto
        chosen = {} if rescoring is None else {"asr_rescoring": rescoring}
        settings = make_settings(backbone_dir, store, tmp_path / f"{rescoring}", dtype=dtype, **chosen)
        async with running_app(settings) as (_, client):
            replies = [await client.post("/asr", files={"file": ("a.wav", clip, "audio/wav")}) for clip in CLIPS]
        assert all(reply.status_code == 200 for reply in replies), [reply.text for reply in replies]
        served[rescoring] = [reply.json()["text"] for reply in replies]
        runs = rescoring == "true" or (rescoring is None and (native == "bfloat16" or (cpu_class, dtype) in {
            ("avx2", "float32"), ("avx2", "int8"), ("avx512", "float32"), ("avx512-vnni", "int8")}))
        assert served[rescoring] == expected_answers(whisper_store, native if runs else None, dtype)
    assert served["true"] != served["false"]  # the heavy second pass changed some answer
    assert (store / "asr-default" / "adapter_config.json").read_bytes() == on_disk


@pytest.mark.anyio
async def test_a_second_pass_without_its_checkpoints_tokenizer_fails_the_sets_load_with_the_reason(whisper_store,
                                                                                                 tmp_path) -> None:
    """The tiny checkpoint ships no tokenizer: with rescoring forced on, asr-default cannot load, and says why,
    while the other tasks serve."""
    backbone_dir, store = whisper_store
    settings = make_settings(backbone_dir, store, tmp_path, dtype="float32", asr_rescoring="true")
    async with running_app(settings, wait_ready=False) as (_, client):
        reply = await client.post("/asr", files={"file": ("a.wav", CLIPS[0], "audio/wav")})
        assert reply.status_code == 500 and "ELP_ASR_RESCORING=false" in reply.text, reply.text
        emotion = await client.post("/emotion", files={"file": ("a.wav", CLIPS[0], "audio/wav")})
        assert emotion.status_code == 200, emotion.text


@pytest.mark.anyio
async def test_under_auto_a_missing_decoder_leaves_the_beams_best(whisper_store, tmp_path, monkeypatch,
                                                                 caplog) -> None:
    """auto is best effort: a backbone folder without the decoder's tokenizer serves the first pass, and says so."""
    monkeypatch.setattr("elp.decoding.rescoring.native_dtype", lambda: "bfloat16")
    backbone_dir, store = whisper_store
    settings = make_settings(backbone_dir, store, tmp_path, dtype="float32")
    with caplog.at_level(logging.WARNING, logger="elp.tasks.asr"):
        async with running_app(settings) as (_, client):
            replies = [await client.post("/asr", files={"file": ("a.wav", clip, "audio/wav")}) for clip in CLIPS]
    assert [reply.json()["text"] for reply in replies] == expected_answers(whisper_store, None)
    assert any("second pass off" in record.getMessage() for record in caplog.records)


def test_the_setting_reads_auto_true_false_and_the_booleans_it_was(monkeypatch) -> None:
    """``auto`` by default; the boolean forms of the setting before ``auto`` (env and code) still mean true / false."""
    monkeypatch.delenv("ELP_ASR_RESCORING", raising=False)
    assert settings_from_args([]).asr_rescoring == "auto"
    assert settings_from_args(["--asr-rescoring", "false"]).asr_rescoring == "false"
    for value, mode in [("true", "true"), ("1", "true"), ("yes", "true"), ("False", "false"), ("0", "false"),
                        ("AUTO", "auto")]:
        monkeypatch.setenv("ELP_ASR_RESCORING", value)
        assert settings_from_args([]).asr_rescoring == mode, value
        assert rescoring_mode({"asr_rescoring": value}) == mode, value  # the library reads it the same way
    monkeypatch.delenv("ELP_ASR_RESCORING")
    assert Settings(asr_rescoring=True).asr_rescoring == "true"
    with pytest.raises(ValidationError):
        Settings(asr_rescoring="sometimes")
