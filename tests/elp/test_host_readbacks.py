"""The model stage reads device values back to the host a fixed number of times per batch, however
many adapter sets share it: on a GPU each read-back (``.tolist()``, ``int(t)``, ``.cpu()``, ...) waits
for the queue to drain, so one per set made mixed batches cost more than their kernels
(benchmarks/README.md, issue #20). Counted here on the CPU, where the code path is the same."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

import pytest
import torch

from elp import MultiAdapterModel, load_backbone
from elp.host_staging import copy_home, upload_indices
from elp.testing import make_random_adapter_set, seeded_waveform

READ_BACKS = ("tolist", "item", "cpu", "__int__", "__float__", "__bool__", "__index__")


@contextlib.contextmanager
def counted_read_backs() -> Iterator[Counter]:
    """Calls of the tensor methods that read a device value back, by name."""
    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READ_BACKS}

    def counting(name, original):
        def method(self, *args, **kwargs):
            counts[name] += 1
            return original(self, *args, **kwargs)
        return method

    for name, original in originals.items():
        setattr(torch.Tensor, name, counting(name, original))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@pytest.fixture(scope="module")
def model(tiny_backbone_dir):
    backbone = load_backbone(str(tiny_backbone_dir("whisper")))
    model = MultiAdapterModel(backbone).eval()
    for seed, task in enumerate(("asr", "emotion", "intent", "verification")):
        model.add_adapter_set(task, make_random_adapter_set(backbone, task, seed=seed))
    return model


@pytest.mark.parametrize("gathered", [False, True], ids=["per-group", "gathered"])
def test_read_backs_do_not_grow_with_the_sets_in_a_batch(model, gathered) -> None:
    model.gathered_routing = gathered
    waves = [seeded_waveform(0.6 + 0.15 * row, seed=row) for row in range(8)]
    counts = {}
    for sets in (["emotion"] * 8, ["asr", "emotion", "intent", "verification"] * 2):
        model.head_outputs(waves, sets)  # warm: stacks, caches
        with counted_read_backs() as counted:
            model.head_outputs(waves, sets)
        counts[len(set(sets))] = sum(counted.values())
    assert counts[4] == counts[1], counts


def test_upload_indices_and_copy_home_keep_values_and_shapes() -> None:
    first, second = upload_indices([[3, 1], [0, 2, 5]], torch.device("cpu"))
    assert first.tolist() == [3, 1] and second.tolist() == [0, 2, 5] and first.dtype == torch.long
    tensors = [torch.randn(2, 3, 4), torch.randn(5).half(), torch.randn(1, 7)]
    home = copy_home(tensors)
    assert [t.shape for t in home] == [t.shape for t in tensors] and all(t.dtype == torch.float32 for t in home)
    for copied, tensor in zip(home, tensors, strict=True):
        torch.testing.assert_close(copied, tensor.float(), rtol=0, atol=0)
