"""Gathered routing's weight stacks: reused between batches, rebuilt when weights change, bounded."""

from __future__ import annotations

import pytest
import torch

from elp import MultiAdapterModel, load_backbone
from elp.model import pad_waveforms
from elp.routing import WeightStacks
from elp.testing import make_random_adapter_set, seeded_waveform


@pytest.fixture(scope="module")
def backbone(tiny_backbone_dir):
    return load_backbone(str(tiny_backbone_dir("wavlm")))


def _mixed(model, keys):
    waves, lengths = pad_waveforms([seeded_waveform(0.5 + 0.1 * i, seed=i) for i in range(len(keys))])
    with torch.no_grad():
        return {key: group.output for key, group in model(waves, lengths, keys).items()}


def test_stacks_are_reused_between_batches_and_rebuilt_when_a_weight_changes(backbone) -> None:
    sets = {"asr": make_random_adapter_set(backbone, "asr", seed=1),
            "emo": make_random_adapter_set(backbone, "emotion", seed=2),
            "int": make_random_adapter_set(backbone, "intent", method="l", seed=3)}
    gathered, per_group = MultiAdapterModel(backbone, gathered_routing=True), MultiAdapterModel(backbone)
    for key, adapter_set in sets.items():
        gathered.add_adapter_set(key, adapter_set)
        per_group.add_adapter_set(key, adapter_set)
    keys = ["asr", "emo", "int", "emo"]
    first = _mixed(gathered, keys)
    built = gathered._stacks.misses
    assert built > 0
    again = _mixed(gathered, keys)
    assert gathered._stacks.misses == built  # nothing restacked for the same sets
    for key in first:
        torch.testing.assert_close(again[key], first[key], rtol=0, atol=0)
    with torch.no_grad():  # an in-place update (what an optimiser step does) must not be served stale
        sets["emo"].e_adapters.adapter_for(0).up.weight.mul_(3.0)
    changed, reference = _mixed(gathered, keys), _mixed(per_group, keys)
    assert gathered._stacks.misses > built
    assert not torch.allclose(changed["emo"], first["emo"], atol=1e-4)
    for key in reference:
        torch.testing.assert_close(changed[key], reference[key], atol=1e-5, rtol=1e-5)
    gathered.remove_adapter_set("int")
    assert gathered._stacks.bytes == 0


def test_stacks_stay_within_their_byte_budget_and_add_the_zero_slot() -> None:
    stacks = WeightStacks(max_bytes=200)  # room for one stack of 3 (192 bytes) or 2 (128) 4x4 floats
    tensors = [torch.full((4, 4), float(i)) for i in range(2)]
    stacked = stacks.get(tensors, True, torch.float32)
    assert stacked.shape == (3, 4, 4) and stacked[2].abs().sum() == 0 and stacked[1][0, 0] == 1.0
    assert stacks.get(tensors, True, torch.float32) is stacked and stacks.misses == 1
    for i in range(5):
        stacks.get([torch.full((4, 4), float(i)), torch.ones(4, 4)], False, torch.float32)
    assert stacks.bytes <= stacks.max_bytes
    assert stacks.get(tensors, True, torch.float32) is not stacked  # evicted, rebuilt
