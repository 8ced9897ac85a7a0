"""A translation set: a tiny real Whisper checkpoint's decoder that detects each row's language from its language
tokens (the top-scoring one after the start token, as Whisper's own ``detect_language``) and then decodes after
``<|lang|><|translate|><|notimestamps|>``, checked against ``transformers``' own forward."""

from __future__ import annotations

import pytest
import torch
from transformers import WhisperForConditionalGeneration

from elp import load_backbone
from elp.adapter_set import AdapterSet
from elp.convert.whisper_decoder_set import build_decoder_set, main
from elp.errors import ConfigError
from elp.heads.config import DecoderConfig
from elp.tasks import get_task, set_task_names
from tests.elp.test_whisper_decoder import TOKENS, decoder_config, mixed_beside_ctc_and_alone, reference_ids

#: the tiny vocabulary's specials (ids from its end of text, 50, up): start, four languages, translate, no timestamps
START, LANGUAGE_IDS, TRANSLATE, NO_TIMESTAMPS = 51, [52, 53, 54, 55], 57, 58
LANGUAGES = ["de", "fr", "it", "ru"]


def translation_config(**changes) -> DecoderConfig:
    """The tiny decoder of the ASR tests, made to detect one of four languages and translate; its specials are
    suppressed (the random decoder would write its start token over and over, which spells nothing)."""
    return decoder_config(**{"prompt_ids": [START, LANGUAGE_IDS[0], TRANSLATE, NO_TIMESTAMPS],
                             "language_ids": LANGUAGE_IDS, "languages": LANGUAGES, "spoken_form": False,
                             "language": "", "suppress_ids": [3, *range(START, 64)], **changes})


def translation_set(whisper_dir) -> AdapterSet:
    """A tiny translation set (the route and SDK tests serve it too)."""
    whisper_model = WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval()
    return build_decoder_set(whisper_model.model.decoder, load_backbone(whisper_dir), TOKENS, translation_config(),
                             task="translation")


@pytest.fixture(scope="module")
def translator(whisper_dir):
    return translation_set(whisper_dir)


@torch.inference_mode()
def reference_language(whisper_model, frames: torch.Tensor, silence: torch.Tensor) -> int:
    """The language token transformers' forward scores highest right after the start token."""
    window = torch.cat([frames, silence[frames.shape[0]:]]).unsqueeze(0)
    logits = whisper_model(encoder_outputs=(window,), decoder_input_ids=torch.tensor([[START]])).logits[0, -1]
    return LANGUAGE_IDS[int(logits[LANGUAGE_IDS].argmax())]


def test_each_row_is_decoded_after_the_prompt_of_its_top_scoring_language(translator, whisper_model, monkeypatch):
    head = translator.head
    features = torch.randn(4, 120, 32, generator=torch.Generator().manual_seed(5))
    lengths = torch.tensor([120, 45, 80, 100])
    fed: list[tuple[list[list[int]], int]] = []
    step = head._step

    def recording_step(tokens, start, *args, **kwargs):
        fed.append((tokens.tolist(), start))
        return step(tokens, start, *args, **kwargs)

    monkeypatch.setattr(head, "_step", recording_step)
    with torch.inference_mode():
        output = head(features, lengths)
    expected = [reference_language(whisper_model, features[row, :length], head.silence)
                for row, length in enumerate(lengths.tolist())]
    assert any(language != LANGUAGE_IDS[0] for language in expected)  # the set's own prompt token is not the answer
    assert fed[0] == ([[START]] * 4, 0)  # one step reads the start token alone...
    assert fed[1] == ([[language, TRANSLATE, NO_TIMESTAMPS] for language in expected], 1)  # ...then each row's prompt
    probabilities, tokens = output[:, :len(LANGUAGES)], output[:, len(LANGUAGES):]
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(4), atol=1e-5)
    assert [LANGUAGE_IDS[int(i)] for i in probabilities.argmax(dim=1)] == expected
    config = head.config
    for row, length in enumerate(lengths.tolist()):
        prompted = DecoderConfig(**{**vars(config), "prompt_ids": [START, expected[row], TRANSLATE, NO_TIMESTAMPS],
                                    "language_ids": [], "languages": []})
        reference = reference_ids(whisper_model, features[row, :length], head.silence, prompted,
                                  head.token_limits(lengths[row:row + 1])[0])
        assert [int(t) for t in tokens[row].tolist() if t >= 0] == reference and reference


def test_served_rows_name_their_language_and_match_alone_after_a_round_trip(translator, whisper_backbone, tmp_path):
    translator.save(tmp_path / "translate-whisper")
    loaded = AdapterSet.load(tmp_path / "translate-whisper")
    assert loaded.config.task == "translation" and loaded.config.decoder.languages == LANGUAGES
    mixed, alone = mixed_beside_ctc_and_alone(whisper_backbone, "translate", loaded)
    assert [(row.text, row.label) for row in mixed] == [(row.text, row.label) for row in alone]
    for row in (mixed[0], mixed[2]):
        assert row.text and row.label in LANGUAGES and set(row.scores) == set(LANGUAGES)
        assert row.label == max(row.scores, key=row.scores.__getitem__)
        assert row.words is None  # the words written are not the words spoken: no times
    assert mixed[1].label is None  # the CTC row beside them is untouched


@pytest.mark.parametrize("change, message", [
    (dict(languages=["de"]), "one code per language token"),
    (dict(alignment_heads=[[0, 0]]), "no label tokens, word times or draft"),
    (dict(label_ids=[52]), "no label tokens"),
    (dict(language_ids=[52, 99], languages=["de", "xx"]), "inside its vocabulary"),
])
def test_language_detection_that_cannot_work_is_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        translation_config(**change)


def test_a_translation_set_must_detect_its_language_and_is_never_trained(translator):
    data = {**translator.config.to_dict(), "weights_sha256": None}
    plain = {**data, "decoder": {**data["decoder"], "language_ids": [], "languages": []}}
    with pytest.raises(ConfigError, match="detects each clip's language"):
        AdapterSet(type(translator.config).from_dict(plain))
    with pytest.raises(ConfigError, match="converted"):
        get_task("translation").build_loss(translator, 0)
    assert "translation" not in set_task_names()  # no manifests, training runs or made-up sets


def test_the_converter_refuses_translate_with_what_it_cannot_use(tmp_path, capsys):
    for extra in (["--labels", "de", "fr"], ["--language", "fr"]):
        with pytest.raises(SystemExit):
            main([str(tmp_path / "checkpoint"), str(tmp_path / "out"), "--translate", *extra])
        assert "--translate" in capsys.readouterr().err


def test_the_language_names_are_whispers():
    from transformers.models.whisper.tokenization_whisper import LANGUAGES as TRANSFORMERS_LANGUAGES

    from elp.whisper_languages import WHISPER_LANGUAGE_NAMES, language_name

    assert WHISPER_LANGUAGE_NAMES == TRANSFORMERS_LANGUAGES
    assert (language_name("fr"), language_name("yue"), language_name("xx")) == ("french", "cantonese", "xx")
