"""A decoder set: a tiny real Whisper checkpoint's own decoder served on the shared encoder pass."""

from __future__ import annotations

import pytest
import torch

from elp import MultiAdapterModel, load_backbone
from elp.adapter_set import AdapterSet
from elp.config import AdapterSetConfig
from elp.convert.whisper_decoder_set import build_decoder_set
from elp.errors import ConfigError
from elp.heads.config import DecoderConfig
from elp.heads.seq2seq import detokenize
from elp.heads.shortlist import Int8Shortlist
from elp.testing import answers_alone, make_random_adapter_set, seeded_waveform
from tests.elp.int8_support import needs_vnni

EOT = 50
TOKENS = [f"t{i}" for i in range(EOT)]


def decoder_config(**changes) -> DecoderConfig:
    fields = dict(layers=1, heads=2, ffn_dim=64, vocab_size=64, max_target_positions=32, source_positions=1500,
                  prompt_ids=[1, 60, 61, 62], eot_id=EOT, suppress_ids=[3], begin_suppress_ids=[4, EOT],
                  max_tokens_per_second=6.0, extra_tokens=10, trailing_silence_s=0.3)
    return DecoderConfig(**{**fields, **changes})


@pytest.fixture(scope="module")
def decoder_set(whisper_model, whisper_backbone):
    return build_decoder_set(whisper_model.model.decoder, whisper_backbone, TOKENS, decoder_config())


@torch.inference_mode()
def reference_ids(whisper_model, frames: torch.Tensor, silence: torch.Tensor, config: DecoderConfig,
                  limit: int) -> list[int]:
    """Greedy decoding by transformers' own forward, one full pass per token (no cache)."""
    window = torch.cat([frames, silence[frames.shape[0]:]]).unsqueeze(0)
    ids = list(config.prompt_ids)
    emitted: list[int] = []
    for step in range(limit):
        logits = whisper_model(encoder_outputs=(window,), decoder_input_ids=torch.tensor([ids])).logits[0, -1]
        logits[config.suppress_ids] = float("-inf")
        if step == 0:
            logits[config.begin_suppress_ids] = float("-inf")
        best = int(logits.argmax())
        if best == config.eot_id:
            break
        emitted.append(best)
        ids.append(best)
    return emitted


def test_greedy_decoding_equals_transformers_step_by_step(decoder_set, whisper_model):
    head = decoder_set.head
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 120, 32, generator=generator)
    lengths = torch.tensor([120, 45, 80])
    with torch.inference_mode():
        output = head(features, lengths)
    for row, length in enumerate(lengths.tolist()):
        expected = reference_ids(whisper_model, features[row, :length], head.silence, head.config,
                                 head.token_limits(lengths[row:row + 1])[0])
        got = [int(token) for token in output[row].tolist() if token >= 0]
        assert got == expected and expected  # the tiny random decoder emits something before its limit


def mixed_beside_ctc_and_alone(whisper_backbone, key: str, adapter_set: AdapterSet) -> tuple[list, list]:
    """The answers to three seeded clips routed ``key``, a random CTC set, ``key`` in one batch, and to each alone
    (the decoder-set tests' mixed-batch check)."""
    model = MultiAdapterModel(whisper_backbone)
    model.add_adapter_set(key, adapter_set)
    model.add_adapter_set("asr-ctc", make_random_adapter_set(whisper_backbone, "asr", seed=1))
    clips = [seeded_waveform(seconds, seed=seed) for seed, seconds in enumerate((1.5, 0.8, 2.2))]
    keys = [key, "asr-ctc", key]
    return model.predict(clips, keys), answers_alone(model, clips, keys)


def test_served_rows_match_alone_in_a_mixed_batch_and_after_a_round_trip(decoder_set, whisper_backbone, tmp_path):
    decoder_set.save(tmp_path / "asr-whisper")
    loaded = AdapterSet.load(tmp_path / "asr-whisper")
    assert loaded.head.tokens() == TOKENS
    mixed, alone = mixed_beside_ctc_and_alone(whisper_backbone, "asr-whisper", loaded)
    assert [row.text for row in mixed] == [row.text for row in alone]
    assert mixed[0].text  # the tiny random decoder spells some of its made-up tokens


def test_a_loaded_decoder_set_is_the_saved_one_without_a_random_initialisation(decoder_set, tmp_path, monkeypatch):
    """``from_bytes`` builds the decoder uninitialised (the load sets every value): nothing of a random
    initialisation runs, and every tensor is the saved one, bit for bit."""
    decoder_set.save(tmp_path / "set")
    initialised = []
    monkeypatch.setattr(torch.nn.init, "normal_", lambda tensor, *a, **k: initialised.append(tensor) or tensor)
    loaded = AdapterSet.load(tmp_path / "set")
    assert not [t for t in initialised if not t.is_meta]
    saved = decoder_set.state_dict()
    assert saved.keys() == loaded.state_dict().keys()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    assert AdapterSet(decoder_set.config).head.decoder.embed_tokens.weight.std() > 0  # built to train: initialised


def test_building_a_set_makes_no_shortlist_that_only_serving_reads(whisper_model, whisper_backbone):
    """The silence pass registers the new set to encode zeros only: the int8 shortlist (1.3 s and ~40 MB for
    Whisper base, at every server start for the second pass' decoder) is left to the model that serves it."""
    from elp.backbones.quantize import int8_kernels_work

    fresh = build_decoder_set(whisper_model.model.decoder, whisper_backbone, TOKENS, decoder_config())
    assert fresh.head.shortlist is None
    MultiAdapterModel(whisper_backbone).add_adapter_set("asr-whisper", fresh)
    assert (fresh.head.shortlist is not None) == (int8_kernels_work() is None)


def test_sets_with_the_same_weights_share_one_decoder_when_asked(decoder_set, whisper_backbone, tmp_path):
    """asr-whisper and translate-whisper carry the same bytes: the server's loads keep one decoder for both, and
    the answers are those of separate copies; a changed resident decoder, or other weights, are not shared."""
    import gc

    decoder_set.save(tmp_path / "a")
    decoder_set.save(tmp_path / "b")
    load = AdapterSet.from_bytes
    files = [((tmp_path / n / "adapter_config.json").read_bytes(), (tmp_path / n / "adapter_model.safetensors")
              .read_bytes()) for n in ("a", "b")]
    first, second = (load(*f, share_decoder=True) for f in files)
    assert second.head.decoder is first.head.decoder
    first.head.use_int8_shortlist(full_range=True)
    second.head.use_int8_shortlist(full_range=True)
    assert second.head.shortlist is first.head.shortlist  # built once for the shared decoder
    separate = load(*files[1])  # the library's default: its own copy
    assert separate.head.decoder is not first.head.decoder
    shared_rows = mixed_beside_ctc_and_alone(whisper_backbone, "b", second)
    separate_rows = mixed_beside_ctc_and_alone(whisper_backbone, "b", separate)
    assert [r.text for r in shared_rows[0]] == [r.text for r in separate_rows[0]]
    assert [r.text for r in shared_rows[1]] == [r.text for r in separate_rows[1]]

    with torch.no_grad():  # a resident decoder changed since its load is not handed out
        first.head.decoder.embed_tokens.weight[0, 0] += 1.0
    assert load(*files[1], share_decoder=True).head.decoder is not first.head.decoder
    del first, second, separate
    gc.collect()
    third, fourth = (load(*files[0], share_decoder=True) for _ in range(2))
    assert fourth.head.decoder is third.head.decoder
    third.to(torch.bfloat16)  # what add_adapter_set does to a set beside a 16-bit encoder: shared all the same
    fifth = load(*files[0], share_decoder=True)
    assert fifth.head.decoder is third.head.decoder and fifth.head.decoder.embed_tokens.weight.dtype == torch.bfloat16
    with torch.no_grad():  # changed since its cast: not handed out
        third.head.decoder.embed_tokens.weight[0, 1] += 1.0
    assert load(*files[0], share_decoder=True).head.decoder is not third.head.decoder


def test_decoder_rows_hear_the_clip_then_trailing_zeros(decoder_set, whisper_backbone):
    """What the head reads is the plain encoder's output on the clip + trailing_silence_s of zeros."""
    model = MultiAdapterModel(whisper_backbone)
    model.add_adapter_set("asr-whisper", decoder_set)
    clip = seeded_waveform(1.0, seed=3)
    padded = torch.cat([clip, torch.zeros(round(0.3 * 16000))])
    captured = {}
    handle = decoder_set.head.register_forward_hook(lambda module, args, out: captured.update(features=args[0]))
    try:
        model.predict([clip], ["asr-whisper"])
    finally:
        handle.remove()
    with torch.inference_mode():
        plain = model.encode(padded.unsqueeze(0), torch.tensor([padded.numel()]), ["asr-whisper"])
    assert torch.allclose(captured["features"], plain.hidden_states[-1], atol=1e-6)


@pytest.mark.parametrize("change, message", [
    (dict(method="elp"), "encoder's output unchanged"),
    (dict(vocab=["<blank>", "a"]), "no CTC vocabulary"),
    (dict(task="emotion", labels=["a", "b"]), "cannot carry a sequence decoder"),
])
def test_decoder_sets_that_cannot_work_are_refused(decoder_set, change, message):
    data = {**decoder_set.config.to_dict(), "weights_sha256": None, **change}
    with pytest.raises(ConfigError, match=message):
        AdapterSetConfig.from_dict(data)


def test_decoder_config_refuses_ids_outside_its_vocabulary():
    with pytest.raises(ConfigError, match="inside its vocabulary"):
        decoder_config(eot_id=64)


def test_byte_level_tokens_spell_utf8_and_skip_specials():
    tokens = ["Ġhello", "Ġworld", "!", "ĠcafÃ©"]
    assert detokenize([0, 1, 2, 99, 3], tokens) == "hello world! café"


def test_answers_come_in_the_spoken_form_unless_the_set_keeps_the_decoders_own():
    from elp.heads.seq2seq import WhisperTranscriber

    tokens = ["ĠPress", "Ġ1", "Ġnow.", "ĠIt's"]
    ids = torch.tensor([0.0, 1.0, 2.0, 3.0, -1.0])
    assert WhisperTranscriber(tokens)(ids) == {"text": "press one now it's"}
    assert WhisperTranscriber(tokens, spoken_form=False)(ids) == {"text": "Press 1 now. It's"}


def test_a_clip_filling_the_window_gets_only_the_zeros_that_fit(decoder_set, whisper_backbone):
    model = MultiAdapterModel(whisper_backbone)
    model.add_adapter_set("asr-whisper", decoder_set)
    clip = seeded_waveform(29.9, seed=4)
    assert whisper_backbone.max_samples == 30 * 16000
    assert isinstance(model.predict([clip], ["asr-whisper"])[0].text, str)


def test_a_row_repeating_one_span_ends_with_the_span_kept_once(decoder_set):
    from elp.heads.seq2seq import WhisperDecoderHead

    head = WhisperDecoderHead(decoder_config(stop_repeats=3), 32)
    emitted = torch.tensor([[5.0, 7.0, 8.0, 7.0, 8.0, 7.0, 8.0, -1.0],   # "7 8" three times: loop
                            [5.0, 7.0, 8.0, 7.0, 8.0, 9.0, 9.0, -1.0],   # no span three times in a row
                            [6.0, 6.0, 6.0, -1.0, -1.0, -1.0, -1.0, -1.0]])  # already ended: untouched
    done = torch.tensor([False, False, True])
    stopped = head._stop_loops(emitted, 6, done)
    assert stopped.tolist() == [True, False, False]
    assert emitted[0].tolist() == [5.0, 7.0, 8.0, -1.0, -1.0, -1.0, -1.0, -1.0]
    assert emitted[1, :7].tolist() == [5.0, 7.0, 8.0, 7.0, 8.0, 9.0, 9.0]
    with pytest.raises(ConfigError, match="stop_repeats"):
        decoder_config(stop_repeats=1)


@needs_vnni
def test_int8_token_steps_answer_each_row_as_alone_and_stay_near_the_float_decoder(whisper_model, whisper_backbone):
    float_set = build_decoder_set(whisper_model.model.decoder, whisper_backbone, TOKENS, decoder_config())
    int8_set = build_decoder_set(whisper_model.model.decoder, whisper_backbone, TOKENS, decoder_config())
    int8_set.head.quantize_int8(full_range=True)
    assert int8_set.head.quantized and not float_set.head.quantized
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(3, 90, 32, generator=generator)
    lengths = torch.tensor([90, 40, 65])
    with torch.inference_mode():
        batched = int8_set.head(features, lengths)
        for row, length in enumerate(lengths.tolist()):  # bit for bit the answer it gets alone
            alone = int8_set.head(features[row:row + 1, :length], lengths[row:row + 1])
            assert torch.equal(batched[row, : alone.shape[1]], alone[0])
            assert bool((batched[row, alone.shape[1]:] == -1).all())
        cross = [int8_set.head._cross_states(features, lengths), float_set.head._cross_states(features, lengths)]
        prompt = torch.tensor(decoder_config().prompt_ids).expand(3, -1)
        int8_logits, float_logits = (set_.head._logits(set_.head._step(prompt, 0, [[]], states))
                                     for set_, states in zip((int8_set, float_set), cross, strict=True))
    error = (int8_logits - float_logits).norm() / float_logits.norm()
    assert 0 < error < 0.05  # int8 moves the logits a little, no more
    assert int8_set.head.decoder.layers[0].fc1.__class__.__name__ == "RowwiseInt8Linear"
    with pytest.raises(ConfigError, match="int8"):
        int8_set.to_bytes()


def test_the_int8_shortlist_picks_the_float32_tokens(whisper_model, whisper_backbone, tmp_path):
    plain = build_decoder_set(whisper_model.model.decoder, whisper_backbone, TOKENS, decoder_config())
    shortlisted = build_decoder_set(whisper_model.model.decoder, whisper_backbone, TOKENS, decoder_config())
    shortlisted.head.use_int8_shortlist(full_range=True)
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(4, 100, 32, generator=generator)
    lengths = torch.tensor([100, 30, 70, 55])
    with torch.inference_mode():
        assert torch.equal(shortlisted.head(features, lengths), plain.head(features, lengths))
    shortlisted.save(tmp_path / "set")  # serving state is not saved
    assert AdapterSet.load(tmp_path / "set").head.shortlist is None


@pytest.mark.parametrize(("full_range", "exact_channels"), [pytest.param(True, None, marks=needs_vnni), (False, None),
                                                          pytest.param(True, [3, 10], marks=needs_vnni)])
def test_the_shortlist_bound_holds_and_its_argmax_is_the_float_argmax(full_range, exact_channels):
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(500, 48, generator=generator) * 0.1
    weight[7] = weight[8] + 1e-4  # a near-tie the int8 logits cannot tell apart
    inputs = torch.randn(6, 48, generator=generator)
    inputs[:, 3] = 25.0  # an outlying channel: coarse activation steps, wide bounds
    inputs[5] = inputs[5] + weight[7] * 40  # the near-tied pair on top of one row
    channels = None if exact_channels is None else torch.tensor(exact_channels)
    shortlist = Int8Shortlist(weight, full_range, channels)
    blocked = torch.zeros(500, dtype=torch.bool)
    blocked[[1, 2]] = True
    exact = inputs @ weight.t()
    with torch.no_grad():
        approx, bound = shortlist.approximate(inputs)
    assert bool(((exact - approx).abs() <= bound).all())
    exact = exact.masked_fill(blocked, float("-inf"))
    assert int(exact[5].argmax()) in (7, 8)
    assert torch.equal(shortlist(inputs, weight, blocked), exact.argmax(1))
    tight = Int8Shortlist(weight, full_range, channels, max_candidates=1)  # long shortlists: full float32
    assert torch.equal(tight(inputs, weight, blocked), exact.argmax(1)) and tight.full_rows > 0


@pytest.mark.parametrize("full_range", [pytest.param(True, marks=needs_vnni), False])
def test_near_exact_logits_are_float32_near_the_top_and_int8_below(full_range):
    """The second pass' normalisers (``elp.decoding.rescoring``): the tokens within the margin of a row's best and
    the asked-for ones exactly float32, the rest int8 (so not all exact), and the log-softmax normalisers close."""
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(4000, 64, generator=generator) * 0.3
    inputs = torch.randn(5, 64, generator=generator)
    shortlist = Int8Shortlist(weight, full_range, torch.tensor([0, 1]))
    exact = inputs @ weight.t()
    asked = torch.tensor([11, 2999])  # far below the top in some row: exact only because they were asked for
    with torch.no_grad():
        mixed = shortlist.near_exact_logits(inputs, weight, 2.0, asked)
    near = (exact >= exact.amax(1, keepdim=True) - 1.0).any(0)  # inside the margin whatever the int8 rounding
    near[asked] = True
    assert torch.allclose(mixed[:, near], exact[:, near], atol=1e-4)
    assert not torch.allclose(mixed, exact, atol=1e-4)  # most tokens did come from int8
    assert (mixed.logsumexp(1) - exact.logsumexp(1)).abs().max() < 0.05
    with torch.no_grad():
        wide = shortlist.near_exact_logits(inputs, weight, 1e9, asked)
    assert torch.allclose(wide, exact, atol=1e-4)  # a margin past every token: the float32 projection


def test_exact_channels_narrow_the_bounds():
    generator = torch.Generator().manual_seed(4)
    weight = torch.randn(300, 32, generator=generator) * 0.1
    inputs = torch.randn(4, 32, generator=generator)
    inputs[:, 5] = 40.0
    with torch.no_grad():
        _, wide = Int8Shortlist(weight, True).approximate(inputs)
        _, narrow = Int8Shortlist(weight, True, torch.tensor([5])).approximate(inputs)
    assert float(narrow.median()) < 0.5 * float(wide.median())


def features_read(model: MultiAdapterModel, clips: list, keys: list[str], head) -> tuple[list[torch.Tensor], list]:
    """What ``head`` is given during one ``predict`` (its rows' encoder output), and the answers."""
    seen: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    try:
        answers = model.predict(clips, keys)
    finally:
        handle.remove()
    return seen, answers


def test_on_an_int8_encoder_decoder_rows_read_a_float32_copy_and_the_others_int8(whisper_dir, whisper_model,
                                                                                whisper_backbone):
    # its own set: the test changes it
    decoder_set = build_decoder_set(whisper_model.model.decoder, whisper_backbone, TOKENS, decoder_config())
    clips = [seeded_waveform(seconds, seed=seed) for seed, seconds in enumerate((1.3, 0.9, 2.0))]
    ctc_set = make_random_adapter_set(load_backbone(whisper_dir), "asr", seed=2)
    float_model = MultiAdapterModel(load_backbone(whisper_dir))
    float_model.add_adapter_set("asr-whisper", decoder_set)
    int8_only = MultiAdapterModel(load_backbone(whisper_dir, quantization="int8"))
    int8_only.add_adapter_set("asr-ctc", ctc_set)
    model = MultiAdapterModel(load_backbone(whisper_dir, quantization="int8"))
    model.add_adapter_set("asr-ctc", ctc_set)
    model.add_adapter_set("asr-whisper", decoder_set)
    assert model.decoder_rows.float_copy is not None and model.decoder_rows.float_copy.quantization is None
    assert decoder_set.head.shortlist is not None and not decoder_set.head.quantized  # float steps, int8 shortlist
    head = decoder_set.head
    mixed_seen, mixed = features_read(model, clips, ["asr-whisper", "asr-ctc", "asr-whisper"], head)
    for position, row in enumerate((0, 2)):  # the head sees its set's rows only, padded to the longest
        float_seen, alone = features_read(float_model, [clips[row]], ["asr-whisper"], head)
        frames = float_seen[0].shape[1]
        assert torch.equal(mixed_seen[0][position, :frames], float_seen[0][0])
        assert mixed[row].text == alone[0].text
    padded = torch.cat([clips[0], torch.zeros(round(decoder_set.config.decoder.trailing_silence_s * 16000))])
    int8_features = model.encode(padded[None], torch.tensor([padded.numel()]), ["asr-ctc"]).hidden_states[-1][0]
    assert not torch.allclose(int8_features, mixed_seen[0][0, : int8_features.shape[0]])  # int8 would differ
    assert mixed[1].text == int8_only.predict([clips[1]], ["asr-ctc"])[0].text
    model.remove_adapter_set("asr-whisper")
    assert model.decoder_rows.float_copy is None  # freed with the last decoder set


def test_a_label_set_scores_the_checkpoints_own_tokens_after_the_start_token(whisper_model, whisper_backbone, tmp_path):
    """Language identification: one step after <|startoftranscript|>, the kept label tokens' logits equal
    transformers' full forward at the checkpoint's ids; rows answer as alone in a mixed batch."""
    from elp.convert.whisper_decoder_set import build_label_set

    kept = [EOT, 1, 60, 61, 62]  # end of text, start, three "language" tokens of the tiny vocabulary
    label_set = build_label_set(whisper_model.model.decoder, whisper_backbone, kept, ["de", "en", "fr"],
                                trailing_silence_s=0.3)
    assert label_set.config.decoder.vocab_size == 5 and label_set.config.task == "language"
    label_set.save(tmp_path / "language")
    model = MultiAdapterModel(whisper_backbone)
    model.add_adapter_set("language", AdapterSet.load(tmp_path / "language"))
    model.add_adapter_set("speaker", make_random_adapter_set(whisper_backbone, "verification", seed=2))
    clips = [seeded_waveform(0.7, seed=3), seeded_waveform(1.3, seed=4)]
    mixed = model.predict([clips[0], clips[1], clips[0]], ["language", "language", "speaker"])
    head = model.adapter_sets["language"].head
    for clip, answer in zip(clips, mixed[:2], strict=True):
        assert answer.label in {"de", "en", "fr"} and abs(sum(answer.scores.values()) - 1) < 1e-5
        assert answer.scores == pytest.approx(model.predict([clip], ["language"])[0].scores, abs=1e-5)
        frames = features_read(model, [clip], ["language"], head)[0][0][0]  # the row's frames, trailing zeros too
        with torch.inference_mode():
            window = torch.cat([frames, head.silence[frames.shape[0]:]]).unsqueeze(0)
            logits = whisper_model(encoder_outputs=(window,), decoder_input_ids=torch.tensor([[1]])).logits[0, -1]
        expected = logits[[60, 61, 62]].softmax(-1)
        assert [answer.scores[x] for x in ("de", "en", "fr")] == pytest.approx(expected.tolist(), abs=1e-4)


def test_a_label_bias_shifts_the_label_logits(whisper_model, whisper_backbone):
    import dataclasses

    from elp.convert.whisper_decoder_set import build_label_set

    plain = build_label_set(whisper_model.model.decoder, whisper_backbone, [EOT, 1, 60, 61, 62], ["de", "en", "fr"])
    decoder = dataclasses.replace(plain.config.decoder, label_bias=[0.0, -1.5, 0.7])
    biased = AdapterSet(dataclasses.replace(plain.config, decoder=decoder))
    biased.load_state_dict(plain.state_dict())
    model = MultiAdapterModel(whisper_backbone)
    model.add_adapter_set("plain", plain)
    model.add_adapter_set("biased", biased.eval())
    clip = seeded_waveform(0.9, seed=7)
    a, b = (torch.tensor([o.scores[x] for x in ("de", "en", "fr")]).log() for o in model.predict([clip, clip],
                                                                                                  ["plain", "biased"]))
    assert torch.allclose((b - a) - (b - a)[0], torch.tensor([0.0, -1.5, 0.7]), atol=1e-4)
    with pytest.raises(ConfigError, match="one value per label"):
        dataclasses.replace(decoder, label_bias=[0.0])


def test_label_sets_need_one_token_per_label_and_are_never_trained(whisper_model, whisper_backbone):
    from elp.convert.whisper_decoder_set import build_label_set
    from elp.tasks import get_task

    label_set = build_label_set(whisper_model.model.decoder, whisper_backbone, [EOT, 1, 60, 61], ["de", "en"])
    config = label_set.config
    config.labels = ["de", "en", "fr"]
    with pytest.raises(ConfigError, match="one token per"):
        get_task("language").validate(config)
    with pytest.raises(ConfigError, match="converted, not trained"):
        get_task("language").build_loss(label_set, 2)


def test_a_label_set_reads_the_int8_encoder_and_needs_no_float32_copy(whisper_dir, whisper_model, whisper_backbone):
    from elp.convert.whisper_decoder_set import build_label_set

    label_set = build_label_set(whisper_model.model.decoder, whisper_backbone, [EOT, 1, 60, 61], ["de", "en"])
    assert label_set.config.decoder.float32_encoder is False
    model = MultiAdapterModel(load_backbone(whisper_dir, quantization="int8"))
    model.add_adapter_set("language", label_set)
    assert model.decoder_rows.float_copy is None  # no copy loaded for a set that does not read it
    clip = seeded_waveform(1.1, seed=9)
    seen, _ = features_read(model, [clip], ["language"], label_set.head)
    padded = torch.cat([clip, torch.zeros(round(label_set.config.decoder.trailing_silence_s * 16000))])
    int8_features = model.encode(padded[None], torch.tensor([padded.numel()]), ["language"]).hidden_states[-1][0]
    assert torch.equal(seen[0][0], int8_features)  # its rows read the shared int8 pass


def test_the_converter_refuses_a_draft_for_a_label_set(tmp_path, capsys):
    from elp.convert import whisper_decoder_set

    with pytest.raises(SystemExit):
        whisper_decoder_set.main([str(tmp_path / "ckpt"), str(tmp_path / "out"), "--labels", "de", "en",
                                  "--draft", str(tmp_path / "draft")])
    assert "no use for a draft" in capsys.readouterr().err and not (tmp_path / "out").exists()
