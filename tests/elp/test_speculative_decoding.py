"""Drafted (speculative) decoding of a decoder set gives greedy decoding's tokens, whatever the draft."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import WhisperForConditionalGeneration

from elp import load_backbone
from elp.convert.whisper_decoder_set import build_decoder_set
from elp.errors import ConfigError
from elp.heads.config import DecoderConfig
from elp.heads.draft import SPACE_SYMBOL, DraftProposer, WordTokenizer, aligned_prefix, greedy_text, greedy_words
from elp.heads.speculative import decode_row

EOT = 50
TOKENS = [f"t{i}" for i in range(EOT)]
VOCAB = ["<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz"]


def decoder_config(**changes) -> DecoderConfig:
    fields = dict(layers=1, heads=2, ffn_dim=64, vocab_size=64, max_target_positions=32, source_positions=1500,
                  prompt_ids=[1, 60, 61, 62], eot_id=EOT, suppress_ids=[3], begin_suppress_ids=[4, EOT],
                  max_tokens_per_second=6.0, extra_tokens=10, trailing_silence_s=0.3,
                  draft_hidden=16, draft_kernel=3, draft_vocab=VOCAB, draft_max_tokens=5)
    return DecoderConfig(**{**fields, **changes})


@pytest.fixture(scope="module")
def head(tiny_backbone_dir):
    folder = tiny_backbone_dir("whisper", False)
    whisper = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    return build_decoder_set(whisper.model.decoder, load_backbone(folder), TOKENS, decoder_config()).head


class ScriptedProposer:
    """Proposes a fixed guess of the continuation: the right tokens, wrong ones, or a mixture."""

    def __init__(self, guess: list[int]) -> None:
        self.guess = guess

    def propose(self, emitted: list[int], most: int) -> list[int]:
        return self.guess[len(emitted): len(emitted) + max(most, 0)]


def frames(rows: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 120, 32, generator=generator), torch.tensor([120, 45, 80][:rows])


def greedy_ids(head, features, lengths) -> list[list[int]]:
    head.config.draft_max_rows = 0  # greedy: no call is small enough for the draft
    try:
        with torch.inference_mode():
            output = head(features, lengths)
    finally:
        head.config.draft_max_rows = 1
    return [[int(t) for t in row.tolist() if t >= 0] for row in output]


def wrong(ids: list[int]) -> list[int]:
    return [(token + 7) % EOT for token in ids]


@pytest.mark.parametrize("guess_of", [
    lambda ids: ids + [EOT],                                       # every token right, then the end
    lambda ids: wrong(ids),                                        # every token wrong
    lambda ids: [t if i % 3 else (t + 1) % EOT for i, t in enumerate(ids)],  # every third wrong
    lambda ids: [],                                                # no draft at all
])
def test_drafted_decoding_keeps_greedy_tokens(head, guess_of):
    features, lengths = frames()
    expected = greedy_ids(head, features, lengths)
    assert all(expected)
    with torch.inference_mode():
        cross = head._cross_states(features, lengths)
        limits = head.token_limits(lengths)
        for row in range(features.shape[0]):
            row_cross = [(k[row:row + 1], v[row:row + 1]) for k, v in cross]
            ids, passes = decode_row(head, row_cross, limits[row], ScriptedProposer(guess_of(expected[row])))
            assert ids == expected[row]
            assert passes <= len(expected[row]) + 1


def test_a_right_draft_takes_fewer_passes(head):
    features, lengths = frames(1)
    expected = greedy_ids(head, features, lengths)[0]
    with torch.inference_mode():
        cross = head._cross_states(features, lengths)
        limit = head.token_limits(lengths)[0]
        _, right = decode_row(head, cross, limit, ScriptedProposer(expected + [EOT]))
        _, none = decode_row(head, cross, limit, ScriptedProposer([]))
    assert none == min(len(expected) + 1, limit)
    assert right <= -(-(len(expected) + 1) // (head.config.draft_max_tokens + 1)) + 1


def test_the_head_decodes_one_row_with_its_draft_and_several_greedily(head):
    features, lengths = frames()
    expected = greedy_ids(head, features, lengths)
    with torch.inference_mode():
        single = head(features[1:2], lengths[1:2])
        assert len(head.last_passes) == 1  # drafted: its own passes were counted
        several = head(features, lengths)
        assert head.last_passes == []  # three rows: greedy, batched
    assert [int(t) for t in single[0].tolist() if t >= 0] == expected[1]
    assert [[int(t) for t in row.tolist() if t >= 0] for row in several] == expected


def test_a_draft_config_is_checked():
    with pytest.raises(ConfigError):
        decoder_config(draft_vocab=["<blank>"])
    with pytest.raises(ConfigError):
        decoder_config(draft_kernel=4)
    assert dataclasses.asdict(decoder_config(draft_hidden=0))["draft_hidden"] == 0


# -------------------------------------------------------------------------------- the proposer
WORD_TOKENS = [f"{SPACE_SYMBOL}turn", f"{SPACE_SYMBOL}Turn", f"{SPACE_SYMBOL}on", f"{SPACE_SYMBOL}the",
               f"{SPACE_SYMBOL}kit", "chen", f"{SPACE_SYMBOL}lights", ".", "s", "t", "l", "i", "g", "h"]
END = 99


def proposer(words: list[str]) -> DraftProposer:
    return DraftProposer(words, WordTokenizer(WORD_TOKENS), WORD_TOKENS, (WORD_TOKENS.index("."), END))


def ids(*symbols: str) -> list[int]:
    return [WORD_TOKENS.index(s.replace(" ", SPACE_SYMBOL)) for s in symbols]


def test_the_first_word_is_proposed_capitalised_and_the_rest_follow():
    draft = proposer(["turn", "on", "the", "kitchen"])
    assert draft.propose([], 10) == ids(" Turn", " on", " the", " kit", "chen", ".") + [END]
    assert draft.propose([], 2) == ids(" Turn", " on")


def test_the_proposal_follows_the_decoded_words_where_they_differ():
    draft = proposer(["turn", "on", "the", "kitchen", "lights"])
    # the decoder wrote "Turn off" where the draft says "turn on": the draft goes on after "on"
    assert draft.propose(ids(" Turn") + [WORD_TOKENS.index("t")], 3)[:1] != []
    assert draft.propose(ids(" Turn", " on", " the", " kit"), 3) == ids("chen", " lights", ".")
    assert draft.propose(ids(" Turn", " on", " the", " kit", "chen", " lights"), 3) == ids(".") + [END]
    assert draft.propose(ids(" Turn", " on", " the", " kit", "chen", " lights", "."), 3) == [END]


def test_longest_match_tokenizer_and_alignment():
    tokenizer = WordTokenizer(WORD_TOKENS)
    assert tokenizer.encode(f"{SPACE_SYMBOL}kitchen") == tuple(ids(" kit", "chen"))
    assert tokenizer.encode(f"{SPACE_SYMBOL}lights") == tuple(ids(" lights"))
    assert tokenizer.encode(f"{SPACE_SYMBOL}q") == ()  # no token for it: the draft stops
    assert aligned_prefix(["turn", "off", "the"], ["turn", "on", "the", "lights"]) == 3
    assert aligned_prefix(["turn"], ["turn", "on"]) == 1
    assert aligned_prefix(["switch", "the", "lights"], ["turn", "on", "the", "lights", "now"]) == 4


def test_best_path_ctc_text():
    log_probs = torch.full((7, len(VOCAB)), -9.0)
    for frame, symbol in enumerate([VOCAB.index("h"), VOCAB.index("h"), 0, VOCAB.index("i"), 1, 1,
                                    VOCAB.index("a")]):
        log_probs[frame, symbol] = 0.0
    assert greedy_text(log_probs, VOCAB) == "hi a"


def test_a_draft_attached_to_a_set_is_saved_and_loaded_with_it(tiny_backbone_dir, tmp_path):
    import json

    from safetensors.torch import save_file

    from elp.adapter_set import AdapterSet
    from elp.convert.whisper_decoder_set import with_draft
    from elp.heads.draft import CtcDraft

    folder = tiny_backbone_dir("whisper", False)
    whisper = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    plain = build_decoder_set(whisper.model.decoder, load_backbone(folder), TOKENS, decoder_config(draft_hidden=0))
    torch.manual_seed(0)
    draft = CtcDraft(32, 16, 3, len(VOCAB))
    save_file(draft.state_dict(), tmp_path / "draft_model.safetensors")
    (tmp_path / "draft_config.json").write_text(json.dumps({"hidden": 16, "kernel": 3, "vocab": VOCAB}))
    drafted = with_draft(plain, tmp_path, max_tokens=3)
    loaded = AdapterSet.load(drafted.save(tmp_path / "set"))
    assert loaded.config.decoder.draft_max_tokens == 3 and loaded.config.decoder.draft_hidden == 16
    assert torch.equal(loaded.head.draft.conv.weight, draft.conv.weight)
    features, lengths = frames(1)
    with torch.inference_mode():
        assert torch.equal(loaded.head(features, lengths), plain.head(features, lengths))
        assert loaded.head.last_passes and plain.head.last_passes == []


def test_word_confidence_is_the_weakest_frame_that_spells_it():
    probs = torch.full((6, len(VOCAB)), 0.01)
    spelt = [("h", 0.9), ("i", 0.6), (" ", 0.9), ("a", 0.8), ("a", 0.3), ("<blank>", 0.95)]
    for frame, (symbol, p) in enumerate(spelt):
        probs[frame, VOCAB.index(symbol)] = p
    words = greedy_words(probs.log(), VOCAB)
    assert [w for w, _ in words] == ["hi", "a"]
    assert [round(c, 2) for _, c in words] == [0.6, 0.3]


def test_a_proposal_stops_before_a_word_the_draft_is_unsure_of():
    words = ["turn", "on", "the", "lights"]
    draft = DraftProposer(words, WordTokenizer(WORD_TOKENS), WORD_TOKENS, (WORD_TOKENS.index("."), END),
                          sure=[True, True, False, True])
    assert draft.propose([], 10) == ids(" Turn", " on")
    assert draft.propose(ids(" Turn", " on"), 10) == []  # "the" is unsure: a plain greedy step
    assert draft.propose(ids(" Turn", " on", " the"), 10) == ids(" lights", ".") + [END]
