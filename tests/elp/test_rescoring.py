"""The second pass over a CTC set's beam (elp.decoding.rescoring): the tiny checkpoint's own decoder scores the
n-best teacher-forced as transformers scores them, the served answer is the rescored one (mixed batch = alone),
and sets that cannot rescore are refused."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path

import pytest
import torch

from elp import MultiAdapterModel
from elp.adapter_set import AdapterSet
from elp.backbones.quantize import cpu_has_native_bf16, cpu_kernel_class
from elp.config import AdapterSetConfig
from elp.decoding import WordBigramLM
from elp.decoding.beam import Hypothesis
from elp.decoding.config import RescoringConfig
from elp.decoding.rescoring import DecoderRescorer, rescored_index
from elp.errors import ConfigError
from elp.tasks.asr import second_pass
from elp.testing import answers_alone, make_random_adapter_set, seeded_waveform, tiny_rescorer

WORDS = ["on", "off", "the", "light", "door", "open", "a", "no", "one"]


@pytest.fixture(scope="module")
def rescorer(whisper_dir) -> DecoderRescorer:
    return tiny_rescorer(whisper_dir)


def test_the_decoder_scores_each_transcript_as_transformers_does(rescorer, whisper_model):
    """log p(tokens, end of text | the clip's frames, then the stored silence), summed after the prompt."""
    frames = torch.randn(40, 32, generator=torch.Generator().manual_seed(0))
    texts = ["on the light", "on the light door", "on the door", "the door", ""]
    window = torch.cat([frames, rescorer.head.silence[40:]]).unsqueeze(0)
    expected = []
    for text in texts:
        ids = rescorer.prompt + rescorer.token_ids(text)
        with torch.inference_mode():
            logits = whisper_model(encoder_outputs=(window,), decoder_input_ids=torch.tensor([ids[:-1]])).logits[0]
        after_prompt = torch.tensor(ids[len(rescorer.prompt):])[:, None]
        chosen = logits.log_softmax(-1)[len(rescorer.prompt) - 1:].gather(1, after_prompt)
        expected.append(float(chosen.sum()))
    assert rescorer.log_probs(frames, texts) == pytest.approx(expected, abs=1e-4)
    assert rescorer.log_probs(frames, texts[:3]) == pytest.approx(expected[:3], abs=1e-4)  # 2 shared words
    assert rescorer.log_probs(frames, texts[:1]) == pytest.approx(expected[:1], abs=1e-4)  # all of it shared
    assert rescorer.token_ids("") == [rescorer.eot]


def test_the_winner_adds_weighted_decoder_scores_and_a_token_bonus_to_the_beams():
    hypotheses = [Hypothesis("a", -1.0, -2.0), Hypothesis("b", -2.0, -2.5), Hypothesis("c", -2.0, -2.0)]
    decoder = [-5.0, -1.0, -1.0]
    counts = [2, 2, 5]
    assert rescored_index(hypotheses, decoder, counts, RescoringConfig(weight=0.1, nbest=4)) == 0
    assert rescored_index(hypotheses, decoder, counts, RescoringConfig(weight=1.0, nbest=4)) == 1  # "b" first
    assert rescored_index(hypotheses, decoder, counts, RescoringConfig(weight=1.0, token_bonus=1.0, nbest=4)) == 2
    assert rescored_index(hypotheses, decoder, counts, RescoringConfig(weight=1.0, nbest=2)) == 1
    assert rescored_index(hypotheses[:1], decoder, counts, RescoringConfig(weight=9.0, nbest=4)) == 0


def test_a_single_or_overlong_beam_keeps_the_searchs_answer(rescorer):
    frames = torch.zeros(10, 32)
    alone = [Hypothesis("on", 0.0, 0.0)]
    assert rescorer.best(frames, alone, RescoringConfig(nbest=4)) is alone[0]
    too_long = "x " * 40  # more tokens than the tiny decoder's 32 positions
    ranked = [Hypothesis(too_long, 0.0, 0.0), Hypothesis("on", -1.0, -1.0)]
    assert rescorer.best(frames, ranked, RescoringConfig(nbest=4)) is ranked[0]


def rescoring_set(whisper_backbone, weight: float) -> AdapterSet:
    """A random CTC set with a word LM over WORDS and a second pass of ``weight``."""
    adapter_set = make_random_adapter_set(whisper_backbone, "asr", seed=4)
    adapter_set.attach_language_model(WordBigramLM.build([" ".join(WORDS)], {w: 1.0 for w in WORDS}, alpha=0.5,
                                                         beta=1.0, beam_width=16, temperature=3.0))
    adapter_set.config.rescoring = RescoringConfig(weight=weight, nbest=8)
    return adapter_set


def served_model(whisper_backbone, rescorer, monkeypatch, weight: float) -> MultiAdapterModel:
    monkeypatch.setattr("elp.decoding.rescoring.checkpoint_rescorer", lambda source, dtype="float32": rescorer)
    model = MultiAdapterModel(whisper_backbone)
    model.add_adapter_set("asr-second", rescoring_set(whisper_backbone, weight))
    model.add_adapter_set("asr-ctc", make_random_adapter_set(whisper_backbone, "asr", seed=1))
    return model


CLIPS = [seeded_waveform(seconds, seed=seed) for seed, seconds in enumerate((1.5, 0.8, 2.2, 1.1, 1.8))]


def test_served_rows_carry_their_frames_and_answer_the_rescored_transcript(whisper_backbone, rescorer, monkeypatch):
    model = served_model(whisper_backbone, rescorer, monkeypatch, weight=50.0)
    adapter_set = model.adapter_sets["asr-second"]
    assert adapter_set.rescorer_source == whisper_backbone.source
    rows = model.head_outputs(CLIPS, ["asr-second"] * len(CLIPS))
    vocab = len(adapter_set.config.vocab)
    assert all(row.output.shape[1] == vocab + 32 for row in rows)  # log-probs, then the last layer's frames
    answers = [model.post_process(row).text for row in rows]
    search = adapter_set.post_processor.beam_decoder
    first_pass, by_decoder = [], []
    for row in rows:
        ranked = search.nbest(row.output[:, :vocab].numpy(), 8)
        scores = rescorer.log_probs(row.output[:, vocab:], [h.text for h in ranked])
        first_pass.append(ranked[0].text)
        by_decoder.append(ranked[max(range(len(ranked)), key=scores.__getitem__)].text)
    assert answers == by_decoder  # weight 50: the decoder's favourite of the beam
    assert answers != first_pass  # and it disagreed with the search somewhere


def test_a_rescoring_set_answers_as_alone_in_a_mixed_batch(whisper_backbone, rescorer, monkeypatch):
    model = served_model(whisper_backbone, rescorer, monkeypatch, weight=1.0)
    keys = ["asr-second", "asr-ctc", "asr-second", "asr-second"]
    mixed = model.predict(CLIPS[:4], keys)
    alone = answers_alone(model, CLIPS[:4], keys)
    assert [row.text for row in mixed] == [row.text for row in alone]


def test_without_frames_or_a_checkpoint_the_search_answers(whisper_backbone, rescorer, monkeypatch):
    """Training and ``elp-add-lm`` read bare log-probs; a set no model took has no checkpoint to read."""
    model = served_model(whisper_backbone, rescorer, monkeypatch, weight=50.0)
    adapter_set = model.adapter_sets["asr-second"]
    rows = model.head_outputs(CLIPS, ["asr-second"] * len(CLIPS))
    vocab = len(adapter_set.config.vocab)
    search = adapter_set.post_processor.beam_decoder
    assert [adapter_set.decode_ctc(row.output[:, :vocab]) for row in rows] == [
        search.decode(row.output[:, :vocab].numpy()) for row in rows]
    transcriber = pickle.loads(pickle.dumps(adapter_set.post_processor))
    assert transcriber.rescoring == adapter_set.config.rescoring and transcriber._decoder is None
    assert len(pickle.dumps(adapter_set.post_processor)) < 200_000  # no decoder weights travel


def test_rescoring_round_trips_and_sets_that_cannot_rescore_are_refused(whisper_backbone, tmp_path):
    adapter_set = rescoring_set(whisper_backbone, weight=0.75)
    adapter_set.save(tmp_path / "asr-second")
    assert AdapterSet.load(tmp_path / "asr-second").config.rescoring == RescoringConfig(weight=0.75, nbest=8)
    data = adapter_set.config.to_dict()
    for change, message in [({"language_model": None}, "LM beam"),
                            ({"backbone": {**data["backbone"], "model_type": "wavlm"}}, "Whisper encoder")]:
        with pytest.raises(ConfigError, match=message):
            AdapterSetConfig.from_dict({**data, **change})
    with pytest.raises(ConfigError, match="nbest"):
        RescoringConfig(nbest=1)
    with pytest.raises(ConfigError, match="unknown|unexpected"):
        AdapterSetConfig.from_dict({**data, "rescoring": {**dataclasses.asdict(RescoringConfig()), "beam": 3}})


def test_a_checkpoint_without_its_tokenizer_cannot_rescore_and_says_why(whisper_dir):
    from elp.decoding.rescoring import checkpoint_rescorer
    from elp.errors import RescorerUnavailableError

    with pytest.raises(RescorerUnavailableError, match="decoder and tokenizer"):
        checkpoint_rescorer.__wrapped__(str(whisper_dir))  # the tiny checkpoint ships no tokenizer


WHISPER_BASE = Path("models/whisper-base")


@pytest.mark.skipif(not (WHISPER_BASE / "tokenizer.json").exists(), reason="needs scripts/setup_default_backbone.sh")
def test_the_checkpoints_decoder_scores_as_its_converted_decoder_set():
    """checkpoint_rescorer reads only the decoder's tensors; it must score as the whole checkpoint converted does."""
    import functools

    from transformers import AutoTokenizer

    from elp.convert.whisper_decoder_set import convert
    from elp.decoding.rescoring import checkpoint_rescorer

    lean = checkpoint_rescorer.__wrapped__(str(WHISPER_BASE), "float32-exact")
    tokenizer = AutoTokenizer.from_pretrained(WHISPER_BASE)
    whole = DecoderRescorer(convert(WHISPER_BASE).head, functools.partial(tokenizer.encode, add_special_tokens=False))
    frames = torch.randn(120, 512, generator=torch.Generator().manual_seed(1))
    texts = ["turn on the lights in the kitchen", "turn on the light in the kitchen", "turn of the lights"]
    assert lean.prompt == whole.prompt and lean.eot == whole.eot and lean.projection is None
    expected = whole.log_probs(frames, texts)
    assert lean.log_probs(frames, texts) == pytest.approx(expected, abs=1e-3)
    # what float32 serves: the normalisers mostly from int8, each token within a few hundredths of a nat
    served = checkpoint_rescorer.__wrapped__(str(WHISPER_BASE), "float32")
    assert served.projection is not None and served.head.shortlist is None  # the head itself stays float
    scores = served.log_probs(frames, texts)
    assert scores != expected and scores == pytest.approx(expected, abs=0.03 * len(served.token_ids(texts[0])))


def test_a_bfloat16_decoder_scores_within_a_rounding_of_float32(rescorer):
    """What CPUs with native bfloat16 serve (``native_dtype``): the same tree pass in half the bytes."""
    frames = torch.randn(40, 32, generator=torch.Generator().manual_seed(1))
    texts = ["on the light", "on the light door", "on the door", "open a door", ""]
    half = DecoderRescorer(copy.deepcopy(rescorer.head).to(torch.bfloat16), rescorer.encode)
    exact, rounded = rescorer.log_probs(frames, texts), half.log_probs(frames, texts)
    assert half.head.silence.dtype == torch.bfloat16 and rounded != exact  # it did compute in bfloat16
    assert rounded == pytest.approx(exact, abs=0.05 * max(len(rescorer.token_ids(t)) for t in texts))


def test_int8_normalisers_score_within_hundredths_of_the_float32_projection(rescorer, monkeypatch):
    """The served float32 pass (``DecoderRescorer.projection``): every transcript token's logit exact, the
    normalisers from int8 below the margin; at margin 0 nearly every token comes from int8, and the scores still
    stay within a few hundredths a token of the full projection's."""
    from elp.backbones.quantize import cpu_has_vnni
    from elp.decoding import rescoring as rescoring_module
    from elp.decoding.rescoring import int8_projection
    from elp.heads.shortlist import Int8Shortlist

    frames = torch.randn(40, 32, generator=torch.Generator().manual_seed(2))
    texts = ["on the light", "on the light door", "open a door", ""]
    head = copy.deepcopy(rescorer.head)
    built = int8_projection(head)  # what checkpoint_rescorer gives a float32 pass
    assert built is not None and built.full_range == cpu_has_vnni() and head.shortlist is None
    # the tiny decoder is 32 wide: all of it would be the served copy's float32 channels; here none are
    served = DecoderRescorer(head, rescorer.encode, Int8Shortlist(head.decoder.embed_tokens.weight, cpu_has_vnni()))
    monkeypatch.setattr(rescoring_module, "NORMALISER_MARGIN", 0.0)
    exact, mixed = rescorer.log_probs(frames, texts), served.log_probs(frames, texts)
    assert mixed != exact  # int8 values did enter the normalisers
    assert mixed == pytest.approx(exact, abs=0.03 * max(len(rescorer.token_ids(t)) for t in texts))
    monkeypatch.setattr(rescoring_module, "NORMALISER_MARGIN", 1e9)  # every token exact: the float32 scores
    assert served.log_probs(frames, texts) == pytest.approx(exact, abs=1e-5)


@pytest.mark.parametrize(("mode", "native", "given", "encoder", "cpu_class", "runs"), [
    ("auto", "bfloat16", None, "int8", "avx512-vnni", "bfloat16"), ("auto", "float32", None, "int8", "avx2", "float32"),
    ("auto", "float32", None, "int8", "avx512-vnni", "float32"),
    ("auto", "float32", None, "float32", "avx2", "float32"), ("auto", "float32", None, "float32", "avx512-vnni", None),
    ("auto", "float32", None, "float32", "avx512", "float32"), ("auto", "float32", None, "int8", "avx512", None),
    ("auto", "float32", None, "float32", "other", None),
    ("auto", "float32", None, None, "avx2", None), ("auto", "float32", None, "bfloat16", "avx2", None),
    ("true", "float32", None, "int8", "other", "float32"), ("true", "bfloat16", "float32", "int8", "other", "float32"),
    ("false", "bfloat16", None, "float32", "avx2", None), (True, "float32", None, "int8", "other", "float32"),
    (False, "bfloat16", None, "float32", "avx2", None), ("auto", "float32", "bfloat16", "int8", "other", "bfloat16")])
def test_the_setting_runs_the_second_pass_where_its_cost_was_measured_to_fit(monkeypatch, mode, native, given, encoder,
                                                                            cpu_class, runs):
    """auto: in bfloat16 where this CPU computes it natively; in float32 beside the encoder ``ELP_DTYPE=auto`` picks
    where its cost was measured (float32 on AVX2 and AVX-512 CPUs without VNNI, int8 with AVX-512 VNNI or AVX-VNNI),
    not elsewhere (ARM, x86 without AVX2, an encoder in another precision) nor beside an encoder of unknown precision
    (the costs measured: the asr-default card)."""
    monkeypatch.setattr("elp.decoding.rescoring.native_dtype", lambda: native)
    monkeypatch.setattr("elp.backbones.quantize.cpu_kernel_class", lambda: cpu_class)
    options = {"asr_rescoring": mode, "rescoring_dtype": given}
    if encoder is not None:
        options["encoder_precision"] = encoder
    assert second_pass(options)[0] == runs
    # beside a GPU encoder auto leaves it off (its CPU cost was bounded against a CPU encoder); true still runs it
    beside_gpu = second_pass({**options, "encoder_device": "cuda"})[0]
    assert beside_gpu == (runs if mode in ("true", True) else None)


def test_the_cpus_vector_class_is_read_from_its_flags(tmp_path):
    """What the float32 pass' costs were measured per (the flags of /proc/cpuinfo)."""
    cpuinfo = tmp_path / "cpuinfo"
    for flags, kernel_class in [("fpu sse4_2 avx avx2 fma", "avx2"), ("fpu avx2 avx_vnni", "avx2"),
                                ("fpu avx2 avx512f avx512_vnni", "avx512-vnni"),
                                ("fpu avx2 avx512f avx512bw", "avx512"),
                                ("fp asimd asimddp bf16", "other"), ("fpu sse4_2 avx", "other")]:
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert cpu_kernel_class(cpuinfo) == kernel_class, flags
    assert cpu_kernel_class(tmp_path / "missing") == "other"


def test_a_set_may_read_fewer_transcripts_where_its_decoder_runs_in_float32(whisper_backbone, tmp_path):
    """``by_precision``: the float32 pass costs more a transcript, so the set may carry a smaller n-best for it, and a
    smaller one still beside an int8 encoder (``float32@int8``); the post-processor reads the setting of the
    precision its decoder runs in and the encoder's beside it; the config keeps them all."""
    adapter_set = rescoring_set(whisper_backbone, weight=1.5)
    variants = {"float32": {"nbest": 8, "token_bonus": -1.0}, "float32@int8": {"nbest": 4, "token_bonus": -1.0}}
    adapter_set.config.rescoring = RescoringConfig(weight=1.5, nbest=16, by_precision=variants)
    adapter_set.rescorer_source = "checkpoint-folder"
    adapter_set.save(tmp_path / "asr-second")
    loaded = AdapterSet.load(tmp_path / "asr-second")
    assert loaded.config.rescoring == adapter_set.config.rescoring
    eight, four = (RescoringConfig(weight=1.5, token_bonus=-1.0, nbest=n) for n in (8, 4))
    for precision, encoder, expected in [("float32", "float32", eight), ("float32-exact", None, eight),
                                         ("float32", "int8", four), ("float32-exact", "int8", four),
                                         ("bfloat16", "int8", RescoringConfig(weight=1.5, nbest=16))]:
        loaded.rescorer_source, loaded.rescorer_dtype = "checkpoint-folder", precision
        loaded.rescorer_encoder = encoder
        loaded.refresh_post_processor()
        assert dataclasses.replace(loaded.post_processor.rescoring, by_precision={}) == expected, (precision, encoder)
    assert loaded.config.rescoring.by_precision == variants
    for by_precision, message in [({"float16": {"nbest": 4}}, "keys must be among"),
                                  ({"float32@int4": {"nbest": 4}}, "keys must be among"),
                                  ({"float32@int8": {"nbest": 1}}, "nbest"),
                                  ({"float32": {"beam": 4}}, "unknown keys"), ({"float32": {"nbest": 1}}, "nbest"),
                                  ({"float32": {"nbest": 4.0}}, "integer"), ({"float32": {"weight": 0}}, "weight"),
                                  ([], "object")]:
        with pytest.raises(ConfigError, match=message):
            RescoringConfig(by_precision=by_precision)  # type: ignore[arg-type]


def test_an_encoder_says_its_device_and_precision_to_the_tasks(whisper_backbone):
    """What ``auto`` reads (``Backbone.serving_options``): a quantised encoder reports its scheme, not its float
    parameters' dtype."""
    assert whisper_backbone.serving_options() == {"encoder_device": "cpu", "encoder_precision": "float32"}
    quantised = copy.copy(whisper_backbone)
    quantised.quantization = "int8"
    assert quantised.serving_options()["encoder_precision"] == "int8"


def test_native_bfloat16_is_read_from_the_cpus_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    for flags, native in [("fpu avx2 avx512f avx512_vnni", False), ("fpu avx512f avx512_bf16", True),
                          ("fpu amx_bf16 amx_tile", True)]:
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert cpu_has_native_bf16(cpuinfo) is native
    assert cpu_has_native_bf16(tmp_path / "missing") is False
