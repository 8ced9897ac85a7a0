"""Word times of a decoder set (``elp.heads.word_timing``): the split of frames between tokens, the words' edges
moved to pauses and sound, and timed rows served by a tiny real Whisper decoder."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration

from elp import MultiAdapterModel, load_backbone
from elp.convert.whisper_decoder_set import build_decoder_set
from elp.decoding.token_alignment import attention_scores, monotonic_starts, token_spans, word_groups
from elp.errors import ConfigError
from elp.heads.config import DecoderConfig
from elp.heads.word_timing import TIMED_PARTS, fitted_to_sound, timed_words
from elp.spoken_text import normalise
from elp.testing import answers_alone, seeded_waveform
from tests.elp.test_whisper_decoder import EOT
from tests.elp.test_whisper_decoder import decoder_config as whisper_decoder_config

#: letters only (numbers would be spelt), every third token opens a word
TOKENS = [("Ġ" if i % 3 == 0 else "") + chr(97 + i % 26) + chr(97 + i // 26) for i in range(EOT)]


def decoder_config(**changes) -> DecoderConfig:
    return whisper_decoder_config(**{"alignment_heads": [[0, 0], [0, 1]], **changes})


@pytest.fixture(scope="module")
def backbone(whisper_dir):
    return load_backbone(whisper_dir)


@pytest.fixture(scope="module")
def whisper_decoder(whisper_dir):
    return WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval().model.decoder


def served(backbone, adapter_set, key: str = "asr-whisper") -> MultiAdapterModel:
    model = MultiAdapterModel(backbone)
    model.add_adapter_set(key, adapter_set)
    adapter_set.task_spec.prepare_for_serving(adapter_set, {})
    return model


# ---------------------------------------------------------------------------------------------- the split
@pytest.mark.parametrize("seed", range(12))
def test_the_split_is_the_best_of_every_split_into_ordered_runs(seed):
    rng = np.random.default_rng(seed)
    tokens, frames = int(rng.integers(1, 5)), int(rng.integers(4, 9))
    scores = rng.normal(size=(tokens, frames))
    best = max(((0, *cut) for cut in itertools.combinations(range(1, frames), tokens - 1)),
               key=lambda starts: sum(scores[i, t] for i in range(tokens)
                                      for t in range(starts[i], starts[i + 1] if i + 1 < tokens else frames)))
    assert monotonic_starts(scores).tolist() == list(best)


def test_fewer_frames_than_tokens_give_no_spans_and_one_token_spans_the_clip():
    assert monotonic_starts(np.zeros((4, 3))) is None
    assert token_spans(torch.rand(2, 4, 3).softmax(-1)) is None
    weights = torch.rand(2, 1, 20).softmax(-1)  # one token: nothing to standardise across
    assert np.isfinite(attention_scores(weights)).all()
    assert token_spans(weights) == [(0, 20)]


def test_each_token_gets_the_frames_its_attention_looks_at():
    weights = torch.full((2, 3, 30), 0.01)
    for token, (first, end) in enumerate([(2, 9), (9, 20), (20, 28)]):
        weights[:, token, first:end] = 1.0
    spans = token_spans(weights / weights.sum(-1, keepdim=True))
    assert [first for first, _ in spans] == [0, 9, 20]  # the first run opens the clip; the rest start on cue


def test_words_open_at_tokens_that_start_with_a_space():
    assert word_groups([True, False, True, True, False, False]) == [[0, 1], [2], [3, 4, 5]]
    assert word_groups([False, True]) == [[0], [1]]  # the first token opens a word either way


# ------------------------------------------------------------------------------------------ edges and sound
def levels_of(loud_runs: list[tuple[int, int]], frames: int) -> np.ndarray:
    levels = np.full(frames, -90.0)
    for first, end in loud_runs:
        levels[first:end] = -20.0
    return levels


def test_a_boundary_moves_to_the_pause_near_it_and_words_end_where_they_sound():
    levels = levels_of([(5, 20), (26, 40)], 48)
    spans = [(0, 23), (23, 48)]  # two one-token words, the boundary inside the pause
    assert fitted_to_sound(spans, [True, True], levels) == [(5, 20), (26, 40)]
    late = [(0, 30), (30, 48)]  # the boundary 4 frames into the second word: the pause before it is within reach
    assert fitted_to_sound(late, [True, True], levels) == [(5, 20), (26, 40)]


def test_without_a_pause_within_reach_a_boundary_stays_and_inner_tokens_are_untouched():
    levels = levels_of([(0, 60)], 60)  # continuous sound
    spans = [(0, 10), (10, 30), (30, 60)]
    assert fitted_to_sound(spans, [True, False, True], levels) == spans
    far = levels_of([(0, 30), (45, 60)], 60)  # the pause is 12+ frames from the boundary at 57
    assert fitted_to_sound([(0, 57), (57, 60)], [True, True], far)[1][0] == 57


# ------------------------------------------------------------------------------------------ post-processing
def timed_row(ids: list[int], spans: list[tuple[float, float]], probabilities: list[float], width: int = 8):
    row = torch.full((TIMED_PARTS, width), -1.0)
    row[0, : len(ids)] = torch.tensor(ids, dtype=torch.float)
    row[1, : len(ids)] = torch.tensor([a for a, _ in spans])
    row[2, : len(ids)] = torch.tensor([b for _, b in spans])
    row[3, : len(ids)] = torch.tensor(probabilities)
    return row.flatten()


def test_a_decoder_word_spelt_as_several_shares_its_span_by_letters():
    from elp.heads.whisper_text import WhisperTranscriber

    tokens = ["ĠPress", "Ġ25", "Ġnow", "."]
    row = timed_row([0, 1, 2, 3], [(0.0, 0.2), (0.2, 0.6), (0.6, 0.8), (0.8, 0.9)], [0.9, 0.5, 0.7, 0.9])
    answer = WhisperTranscriber(tokens, timed=True)(row)
    assert answer["text"] == "press twenty five now"
    words = answer["words"]
    assert [w for w, *_ in words] == ["press", "twenty", "five", "now"]
    assert words[1][1:3] == pytest.approx((0.2, 0.2 + 0.4 * 6 / 10)) and words[2][2] == pytest.approx(0.6)
    assert words[1][3] == words[2][3] == pytest.approx(0.5)
    assert words[3][1:] == pytest.approx((0.6, 0.9, 0.8))  # "now." spans its full stop; confidence the mean
    kept = WhisperTranscriber(tokens, spoken_form=False, timed=True)(row)
    assert kept["text"] == "Press 25 now." and [w for w, *_ in kept["words"]] == ["Press", "25", "now."]


def test_words_that_do_not_spell_the_text_are_not_answered():
    row = timed_row([0, 1], [(0.0, 0.5), (0.5, 1.0)], [0.9, 0.9])
    spell = normalise
    assert timed_words(row, lambda t: [b" hello", b" world"][t], spell, "hello world") is not None
    assert timed_words(row, lambda t: [b" hello", b" world"][t], spell, "hello there") is None


# ---------------------------------------------------------------------------------------------- served
def test_timed_rows_keep_the_tokens_and_their_words_spell_the_text_in_the_clip(whisper_decoder, backbone):
    adapter_set = build_decoder_set(whisper_decoder, backbone, TOKENS, decoder_config())
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("asr-whisper", adapter_set)
    clips = [seeded_waveform(seconds, seed=seed) for seed, seconds in enumerate((1.6, 0.7, 2.4))]
    keys = ["asr-whisper"] * 3
    untimed = model.head_outputs(clips, keys)
    assert all(row.output.dim() == 1 for row in untimed) and model.predict(clips[:1], keys[:1])[0].words is None
    model = served(backbone, adapter_set)
    timed = model.head_outputs(clips, keys)
    for plain, row in zip(untimed, timed, strict=True):  # timing reads the tokens, never changes them
        assert torch.equal(row.output.view(TIMED_PARTS, -1)[0], plain.output)
    answers = model.predict(clips, keys)
    assert any(answer.words for answer in answers)
    for answer in answers:
        assert " ".join(word for word, *_ in answer.words) == answer.text
        assert all(0.0 <= start < end <= 1.0 and 0.0 < confidence <= 1.0 for _, start, end, confidence in answer.words)
        assert [start for _, start, *_ in answer.words] == sorted(start for _, start, *_ in answer.words)
    alone = answers_alone(model, clips, keys)
    for mixed, single in zip(answers, alone, strict=True):  # a row's times do not depend on its batch-mates
        assert [w for w, *_ in mixed.words] == [w for w, *_ in single.words]
        assert np.allclose([w[1:] for w in mixed.words], [w[1:] for w in single.words], atol=1e-4)


def test_a_tokens_probability_is_the_decoders_own_for_it(whisper_decoder, backbone):
    adapter_set = build_decoder_set(whisper_decoder, backbone, TOKENS, decoder_config())
    model = served(backbone, adapter_set)
    head = adapter_set.head
    captured = {}
    handle = head.register_forward_hook(lambda module, args, out: captured.update(args=args))
    try:
        row = model.head_outputs([seeded_waveform(1.6, seed=0)], ["asr-whisper"])[0].output.view(TIMED_PARTS, -1)
    finally:
        handle.remove()
    features, lengths = captured["args"][:2]
    with torch.inference_mode():
        cross = head._cross_states(features, lengths)
        prompt = torch.tensor([head.config.prompt_ids])
        first = head._logits(head._step(prompt, 0, [[] for _ in head.decoder.layers], cross)[:, -1])
    assert float(row[3, 0]) == pytest.approx(float(first.softmax(-1)[0, int(row[0, 0])]), rel=1e-4)


def test_only_transcribing_sets_that_name_alignment_heads_are_timed(whisper_decoder, backbone):
    plain = build_decoder_set(whisper_decoder, backbone, TOKENS, decoder_config(alignment_heads=[]))
    served(backbone, plain)
    assert not plain.head.word_times and not plain.head.reads_waveform
    timed = build_decoder_set(whisper_decoder, backbone, TOKENS, decoder_config())
    served(backbone, timed)
    assert timed.head.word_times and timed.head.reads_waveform
    assert timed.post_processor.timed  # the post-processor was built for the timed rows
    assert not timed.head.time_words(False) and not timed.head.reads_waveform


@pytest.mark.parametrize("heads", [[[1, 0]], [[0, 2]], [[0]]])
def test_alignment_heads_must_lie_inside_the_decoder(heads):
    with pytest.raises(ConfigError, match="alignment_heads"):
        decoder_config(alignment_heads=heads)
