"""Adapter sets: training touches only adapters, E starts near identity, round trips are exact,
and a mixed batch gives every row what it gets alone (the contract of the core)."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
import torch

from elp import (
    AdapterFormatError,
    AdapterSet,
    BackboneMismatchError,
    MultiAdapterModel,
    config_for_method,
    load_backbone,
)
from elp.model import pad_waveforms
from elp.testing import make_random_adapter_set, outputs_per_row, save_tiny_backbone, seeded_waveform

WAVES = [seeded_waveform(s, seed=i) for i, s in enumerate((1.0, 0.63, 1.37, 0.5))]


def test_only_adapter_parameters_train_and_frozen_weights_stay_bit_identical(backbone):
    adapter_set = make_random_adapter_set(backbone, "emotion", method="elp", num_prompt_frames=3)
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("emotion", adapter_set)
    frozen_before = {k: v.clone() for k, v in backbone.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable == [], "the backbone must not expose trainable parameters"
    assert all(p.requires_grad for p in adapter_set.parameters())
    optimizer = torch.optim.Adam(adapter_set.parameters(), lr=1e-2)
    model.train()
    batch, lengths = pad_waveforms(WAVES[:2])
    logits = model(batch, lengths, ["emotion", "emotion"])["emotion"].output
    before = {k: v.clone() for k, v in adapter_set.state_dict().items()}
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    optimizer.step()
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, frozen_before[key]), key
    changed = [k for k, v in adapter_set.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("e_adapters") for k in changed)
    assert any(k.startswith("p_adapter") for k in changed)
    assert any(k.startswith("featurizer") for k in changed)


def test_e_adapters_at_initialisation_stay_close_to_the_plain_backbone(backbone):
    config = config_for_method("e", "emotion", backbone.identity.to_dict(), labels=["a", "b"])
    fresh = AdapterSet.create(config, backbone)
    plain = AdapterSet.create(config_for_method("none", "emotion", backbone.identity.to_dict(), labels=["a", "b"]),
                              backbone)
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("fresh", fresh)
    model.add_adapter_set("plain", plain)
    batch, lengths = pad_waveforms(WAVES[:1])
    with torch.no_grad():
        adapted = model.encode(batch, lengths, ["fresh"]).hidden_states
        reference = model.encode(batch, lengths, ["plain"]).hidden_states
    for a, r in zip(adapted, reference, strict=True):
        assert (a - r).norm() / r.norm() < 0.05


def test_save_load_round_trip_gives_identical_outputs(backbone, tmp_path):
    adapter_set = make_random_adapter_set(backbone, "asr", method="elp", num_prompt_frames=2)
    adapter_set.save(tmp_path / "asr-set")
    assert sorted(p.name for p in (tmp_path / "asr-set").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors"
    ]
    loaded = AdapterSet.load(tmp_path / "asr-set")
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("original", adapter_set)
    model.add_adapter_set("loaded", loaded)
    original, reloaded = outputs_per_row(model, WAVES, ["original"] * 4), outputs_per_row(model, WAVES, ["loaded"] * 4)
    for a, b in zip(original, reloaded, strict=True):
        assert torch.equal(a, b)
    assert loaded.config.to_dict() == adapter_set.config.to_dict()


MIXED_SETS = [
    ("asr-elp", dict(task="asr", method="elp", num_prompt_frames=3, prompt_position="prefix", seed=1)),
    ("spk-el", dict(task="verification", method="el", seed=2)),
    ("emo-ep", dict(task="emotion", method="ep", num_prompt_frames=5, prompt_position="suffix", seed=3)),
    ("int-l", dict(task="intent", method="l", seed=4)),
]


def test_mixed_batch_equals_each_row_alone_and_padding_changes_nothing(backbone):
    model = MultiAdapterModel(backbone)
    for key, options in MIXED_SETS:
        options = dict(options)
        model.add_adapter_set(key, make_random_adapter_set(backbone, options.pop("task"), **options))
    keys = [key for key, _ in MIXED_SETS]
    mixed = outputs_per_row(model, WAVES, keys)
    for row, key in enumerate(keys):
        alone = outputs_per_row(model, [WAVES[row]], [key])[0]
        torch.testing.assert_close(mixed[row], alone, atol=1e-5, rtol=1e-5)
    # Same sets, rows reordered and each row repeated beside a much longer clip: still identical.
    long_clip = seeded_waveform(2.2, seed=9)
    again = outputs_per_row(model, [long_clip, WAVES[2], WAVES[0]], ["int-l", "emo-ep", "asr-elp"])
    torch.testing.assert_close(again[1], mixed[2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again[2], mixed[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("gathered", [False, True])
def test_gathered_and_per_group_routing_give_every_row_its_answer_alone(backbone, gathered, monkeypatch):
    """Both implementations of the E-adapter/LayerNorm routing: sets with E and P, E only, P only (routed
    but no E: the identity slot), no backbone change (rows outside the route) and two sets sharing E/P."""
    import elp.model as model_module

    calls = []
    real = model_module.gathered_apply
    monkeypatch.setattr(model_module, "gathered_apply", lambda *a: calls.append(real(*a)) or calls[-1])
    sets = {key: make_random_adapter_set(backbone, **dict(options)) for key, options in MIXED_SETS}
    sets["int-p"] = make_random_adapter_set(backbone, "intent", method="p", seed=5)
    sets["asr-shared"] = make_random_adapter_set(backbone, "asr", num_prompt_frames=3, seed=6)
    sets["asr-shared"].load_state_dict(sets["asr-elp"].backbone_change_state(), strict=False)
    model = MultiAdapterModel(backbone, gathered_routing=gathered)
    for key, adapter_set in sets.items():
        model.add_adapter_set(key, adapter_set)
    keys = ["asr-elp", "int-p", "spk-el", "emo-ep", "int-l", "asr-shared", "emo-ep"]
    waves = [seeded_waveform(0.4 + 0.17 * i, seed=20 + i) for i in range(len(keys))]
    mixed = outputs_per_row(model, waves, keys)
    assert bool(calls) == gathered and all(result is not None for result in calls)
    for row, key in enumerate(keys):
        torch.testing.assert_close(mixed[row], outputs_per_row(model, [waves[row]], [key])[0], atol=1e-5, rtol=1e-5)


def test_gathered_routing_is_opt_in_and_never_trains(backbone):
    assert MultiAdapterModel(backbone)._use_gathered() is False
    model = MultiAdapterModel(backbone, gathered_routing=True)
    assert model._use_gathered() is True
    model.train()
    assert model._use_gathered() is False


def test_rows_without_e_or_p_share_the_plain_pass(backbone):
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("l-only", make_random_adapter_set(backbone, "intent", method="l"))
    model.add_adapter_set("e-set", make_random_adapter_set(backbone, "emotion", method="e"))
    plain = make_random_adapter_set(backbone, "emotion", method="none")
    model.add_adapter_set("plain", plain)
    batch, lengths = pad_waveforms(WAVES[:2])
    with torch.no_grad():
        shared = model.encode(batch, lengths, ["l-only", "e-set"]).hidden_states
        reference = model.encode(batch, lengths, ["plain", "plain"]).hidden_states
    torch.testing.assert_close(shared[-1][0], reference[-1][0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(shared[-1][1], reference[-1][1], atol=1e-3)


def test_sets_with_the_same_e_and_p_adapters_route_as_one_group_with_the_same_answers(backbone):
    asr = make_random_adapter_set(backbone, "asr", seed=1)
    intent = make_random_adapter_set(backbone, "intent", seed=2)
    intent.load_state_dict(asr.backbone_change_state(), strict=False)  # intent on the ASR set's E and P
    emotion = make_random_adapter_set(backbone, "emotion", seed=3)
    assert asr.backbone_change_signature() == intent.backbone_change_signature()
    assert asr.backbone_change_signature() != emotion.backbone_change_signature()
    assert make_random_adapter_set(backbone, "emotion", method="l").backbone_change_signature() is None
    model = MultiAdapterModel(backbone).eval()
    for key, adapter_set in (("asr", asr), ("intent", intent), ("emotion", emotion)):
        model.add_adapter_set(key, adapter_set)
    route = model._route_for({"asr": [0, 2], "intent": [1]}, 3, backbone.device)
    assert len(route) == 1 and route[0][0] is None  # no gather at all
    route = model._route_for({"asr": [0], "intent": [2], "emotion": [1]}, 3, backbone.device)
    assert sorted(rows.tolist() for rows, _ in route) == [[0, 2], [1]]
    model.train()
    assert len(model._route_for({"asr": [0, 2], "intent": [1]}, 3, backbone.device)) == 2  # weights may move
    model.eval()
    keys = ["asr", "intent", "emotion", "intent"]
    mixed = outputs_per_row(model, WAVES, keys)
    for row, key in enumerate(keys):
        torch.testing.assert_close(mixed[row], outputs_per_row(model, [WAVES[row]], [key])[0], atol=1e-5, rtol=1e-5)


def test_predict_answers_each_task(backbone):
    model = MultiAdapterModel(backbone)
    for key, options in MIXED_SETS:
        options = dict(options)
        model.add_adapter_set(key, make_random_adapter_set(backbone, options.pop("task"), **options))
    predictions = model.predict(WAVES, [key for key, _ in MIXED_SETS])
    assert isinstance(predictions[0].text, str)
    assert predictions[1].embedding.shape == (16,) and abs(float(predictions[1].embedding.norm()) - 1) < 1e-5
    assert predictions[2].label in predictions[2].scores and abs(sum(predictions[2].scores.values()) - 1) < 1e-5
    assert predictions[3].label.count("_") == 2


# ---------------------------------------------------------------- refusals
@pytest.fixture
def saved_set(backbone, tmp_path):
    folder = tmp_path / "emotion-set"
    make_random_adapter_set(backbone, "emotion", method="elp").save(folder)
    return folder


@pytest.mark.parametrize("variant", ["wavlm-postln"])
def test_set_for_another_backbone_is_refused(backbone, saved_set, tmp_path):
    from elp import load_backbone

    other = load_backbone(save_tiny_backbone(tmp_path / "other", "wavlm", seed=7))
    model = MultiAdapterModel(other)
    with pytest.raises(BackboneMismatchError, match="fingerprint"):
        model.add_adapter_set("x", AdapterSet.load(saved_set))
    whisper = load_backbone(save_tiny_backbone(tmp_path / "whisper", "whisper"))
    with pytest.raises(BackboneMismatchError, match="model_type"):
        MultiAdapterModel(whisper).add_adapter_set("x", AdapterSet.load(saved_set))


@pytest.mark.parametrize("variant", ["wavlm-postln"])
@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "delete", "garbage"])
def test_damaged_weights_are_refused(saved_set, damage):
    weights = saved_set / "adapter_model.safetensors"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        weights.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    elif damage == "delete":
        weights.unlink()
    else:
        weights.write_bytes(b"PK\x03\x04 not a safetensors file")
    with pytest.raises(AdapterFormatError):
        AdapterSet.load(saved_set)


@pytest.mark.parametrize("variant", ["wavlm-postln"])
def test_malformed_weights_with_a_matching_hash_are_refused(saved_set):
    """The sha256 proves only that the config names this file: a crafted pair is refused by the parser."""
    weights = (saved_set / "adapter_model.safetensors").read_bytes() + bytes(4)  # bytes no tensor covers
    config_path = saved_set / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    config_path.write_text(json.dumps(config))
    (saved_set / "adapter_model.safetensors").write_bytes(weights)
    with pytest.raises(AdapterFormatError, match="not a readable safetensors"):
        AdapterSet.load(saved_set)


@pytest.mark.parametrize("variant", ["wavlm-postln"])
def test_config_tampering_is_refused(saved_set):
    config_path = saved_set / "adapter_config.json"
    original = json.loads(config_path.read_text())
    for edit in (
        lambda c: c.update(unexpected_field=1),
        lambda c: c["e_adapter"].update(bottleneck=c["e_adapter"]["bottleneck"] + 1),
        lambda c: c.update(task="dance"),
        lambda c: c.pop("weights_sha256"),
    ):
        config = json.loads(json.dumps(original))
        edit(config)
        config_path.write_text(json.dumps(config))
        with pytest.raises(AdapterFormatError):
            AdapterSet.load(saved_set)
    config_path.write_text("{not json")
    with pytest.raises(AdapterFormatError, match="JSON"):
        AdapterSet.load(saved_set)


@pytest.mark.parametrize("variant", ["wavlm-postln"])
def test_adapter_ids_may_be_any_string(backbone):
    model = MultiAdapterModel(backbone)
    for key in ("train", "to", "forward", "asr-default"):
        model.add_adapter_set(key, make_random_adapter_set(backbone, "emotion", method="l"))
    assert model.predict(WAVES[:1], ["train"])[0].label


@pytest.mark.parametrize("variant", ["wavlm-postln", "whisper-postln"])
def _max_pooled_factorized_intent_set(backbone, seed: int = 0) -> AdapterSet:
    from elp.heads import build_head

    adapter_set = make_random_adapter_set(backbone, "intent", method="elp", seed=seed)
    config = adapter_set.config
    config.head.pooling = "max"
    config.head.factorized_slots = True
    adapter_set.head = build_head(config.head, "intent", adapter_set.featurizer.output_dim, config.num_outputs,
                                  labels=config.labels, slot_names=config.slot_names)
    return adapter_set


def test_max_pooled_slot_factorized_intent_head_round_trips_and_ignores_padding(backbone, tmp_path):
    adapter_set = _max_pooled_factorized_intent_set(backbone)
    config = adapter_set.config
    # 3 intents over actions {activate, deactivate, increase}, objects {lights, volume}, locations
    # {kitchen, none}: the head scores 7 slot values, not 3 intents.
    assert adapter_set.head.output[-1].out_features == 7
    assert "head.slot_incidence" not in adapter_set.state_dict()
    adapter_set.save(tmp_path / "intent")
    loaded = AdapterSet.load(tmp_path / "intent")
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("original", adapter_set)
    model.add_adapter_set("loaded", loaded)
    model.add_adapter_set("other", make_random_adapter_set(backbone, "emotion", method="l"))
    alone = outputs_per_row(model, WAVES[:2], ["original", "original"])
    padded = outputs_per_row(model, [WAVES[0], seeded_waveform(2.0, seed=8), WAVES[1]], ["loaded", "other", "loaded"])
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded[2], alone[1], atol=1e-5, rtol=1e-5)
    # Each intent is made of exactly one value per slot; the two "lights_kitchen" intents share two.
    incidence = adapter_set.head.slot_incidence
    assert incidence.sum(dim=1).tolist() == [3.0, 3.0, 3.0]
    on, off = config.labels.index("activate_lights_kitchen"), config.labels.index("deactivate_lights_kitchen")
    assert float(incidence[on] @ incidence[off]) == 2.0


@pytest.mark.parametrize("variant", ["wavlm-postln", "whisper-postln"])
def test_bfloat16_backbone_serves_every_head_kind_close_to_float32(backbone_dirs, variant, tmp_path):
    # ELP_DTYPE=bfloat16 is the fast setting on CPUs with AVX512-BF16 and on GPUs: every head kind
    # (the slot-factorised intent head's derived buffer and the CTC context blocks included) must run,
    # near the float32 answers.
    sets = {task: make_random_adapter_set(load_backbone(backbone_dirs[variant]), task, seed=i)
            for i, task in enumerate(("asr", "verification", "emotion"))}
    sets["intent"] = _max_pooled_factorized_intent_set(load_backbone(backbone_dirs[variant]))
    sets["asr-context"] = _context_asr_set(load_backbone(backbone_dirs[variant]))
    outputs = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = MultiAdapterModel(load_backbone(backbone_dirs[variant], dtype=dtype))
        for task, adapter_set in sets.items():
            adapter_set.save(tmp_path / task)
            model.add_adapter_set(task, AdapterSet.load(tmp_path / task))
        keys = list(sets)
        outputs[dtype] = outputs_per_row(model, WAVES[:1] * len(keys), keys)
        assert model.predict(WAVES[:1] * len(keys), keys)[3].label in sets["intent"].config.labels
    for full, reduced in zip(outputs[torch.float32], outputs[torch.bfloat16], strict=True):
        torch.testing.assert_close(reduced.float(), full.float(), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("variant", ["wavlm-postln"])
def test_threads_running_one_model_at_once_get_their_own_rows_answers(backbone):
    # The server may run several batch workers over one model: the E-adapter routing of one thread's
    # batch must never reach another's (it is thread-local state read by the layer hooks).
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("first", make_random_adapter_set(backbone, "emotion", seed=1))
    model.add_adapter_set("second", make_random_adapter_set(backbone, "emotion", seed=2))
    jobs = {"first": (WAVES[:2], ["first", "first"]), "second": (WAVES[1:4], ["second", "first", "second"])}
    expected = {name: outputs_per_row(model, *job) for name, job in jobs.items()}
    barrier = threading.Barrier(2)
    mismatches: list[str] = []

    def run(name: str) -> None:
        for _ in range(15):
            barrier.wait(timeout=10)
            for got, want in zip(outputs_per_row(model, *jobs[name]), expected[name], strict=True):
                if not torch.allclose(got, want, atol=1e-5, rtol=1e-5):
                    mismatches.append(name)

    threads = [threading.Thread(target=run, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not mismatches


def _context_asr_set(backbone, blocks: int = 2) -> AdapterSet:
    return make_random_adapter_set(backbone, "asr", method="elp", num_prompt_frames=2, seed=5,
                                   context_blocks=blocks, context_kernel=5)


def test_context_head_round_trips_and_ignores_padding_and_batch_mates(backbone, tmp_path):
    adapter_set = _context_asr_set(backbone)
    assert len(adapter_set.head.context) == 2
    adapter_set.save(tmp_path / "asr-context")
    loaded = AdapterSet.load(tmp_path / "asr-context")
    assert loaded.config.head.context_blocks == 2 and loaded.config.head.context_kernel == 5
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("original", adapter_set)
    model.add_adapter_set("loaded", loaded)
    model.add_adapter_set("other", make_random_adapter_set(backbone, "emotion", method="ep", seed=6))
    alone = [outputs_per_row(model, [wave], ["original"])[0] for wave in WAVES[:2]]
    padded = outputs_per_row(model, [WAVES[0], seeded_waveform(2.0, seed=8), WAVES[1]], ["loaded", "other", "loaded"])
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded[2], alone[1], atol=1e-5, rtol=1e-5)
    # the blocks do mix neighbouring frames: changing one frame's features moves its neighbours' outputs
    features = torch.randn(1, 12, adapter_set.featurizer.output_dim)
    moved = features.clone()
    moved[0, 6] += torch.randn(features.shape[-1])  # not a constant shift: LayerNorm removes those
    lengths = torch.tensor([12])
    difference = (adapter_set.head(moved, lengths) - adapter_set.head(features, lengths)).abs().sum(-1)[0]
    assert difference[5] > 1e-4 and difference[7] > 1e-4 and difference[0] < 1e-6  # kernel 5, two blocks: +-4


def test_new_context_blocks_start_as_the_identity(backbone):
    from training.refit_start import warm_start

    linear = make_random_adapter_set(backbone, "asr", method="elp", seed=7)
    config = linear.config
    config.head.context_blocks = 3
    from elp.heads import build_head

    head = build_head(config.head, "asr", linear.featurizer.output_dim, config.num_outputs)
    warm_start(head, linear.head)
    head.eval()
    features, lengths = torch.randn(2, 9, linear.featurizer.output_dim), torch.tensor([9, 6])
    assert torch.equal(head(features, lengths), linear.head(features, lengths))


def test_one_seed_gives_one_random_set_whatever_the_global_rng(backbone):
    torch.manual_seed(1)
    first = make_random_adapter_set(backbone, "asr", seed=7)
    torch.manual_seed(2)  # what another test or a CUDA run left in the global generator
    second = make_random_adapter_set(backbone, "asr", seed=7)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    other = make_random_adapter_set(backbone, "asr", seed=8).state_dict()
    assert any(not torch.equal(tensor, other[name]) for name, tensor in first.state_dict().items())
