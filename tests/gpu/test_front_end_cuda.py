"""On a CUDA device: the batched front end (the default there) equals the per-row loop and the CPU,
batches come up through one reused pinned buffer per thread without being corrupted by the next
batch, and served head outputs match the CPU's. Skipped without CUDA (CI has none); run on a lent
GPU with ``pytest -m gpu``."""

from __future__ import annotations

import threading

import pytest
import torch

from elp import MultiAdapterModel, load_backbone, pad_waveforms
from elp.host_staging import PinnedBatchStaging
from elp.testing import make_random_adapter_set, seeded_waveform

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

WAVES = [seeded_waveform(seconds, seed=i) for i, seconds in enumerate((0.4, 1.3, 0.9, 0.2, 2.03))]


@pytest.mark.parametrize("family", ["whisper", "wavlm"])
def test_cuda_front_end_is_batched_by_default_and_equals_the_loop_and_the_cpu(tiny_backbone_dir, family):
    backbone = load_backbone(str(tiny_backbone_dir(family)), device="cuda")
    assert backbone.batches_front_end()
    padded, lengths = pad_waveforms(WAVES)
    with torch.no_grad():
        batched, frame_lengths = backbone.front_end(padded.cuda(), lengths.cuda())
        backbone.front_end_mode = "per_row"
        per_row, _ = backbone.front_end(padded.cuda(), lengths.cuda())
        on_cpu, cpu_lengths = load_backbone(str(tiny_backbone_dir(family))).front_end(padded, lengths)
    assert torch.equal(frame_lengths.cpu(), cpu_lengths)
    torch.testing.assert_close(batched, per_row, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batched.cpu(), on_cpu, atol=1e-4, rtol=1e-4)


def test_pinned_staging_uploads_exact_batches_and_reuses_its_buffer():
    staging = PinnedBatchStaging()
    device = torch.device("cuda")
    first, first_lengths = staging.upload(WAVES, device)
    expected, expected_lengths = pad_waveforms(WAVES)
    assert torch.equal(first.cpu(), expected) and torch.equal(first_lengths.cpu(), expected_lengths)
    buffer = staging._local.samples
    assert buffer.is_pinned()
    smaller = WAVES[:2][::-1]
    second, second_lengths = staging.upload(smaller, device)
    assert staging._local.samples.data_ptr() == buffer.data_ptr()  # no new pinned allocation
    assert torch.equal(second.cpu(), pad_waveforms(smaller)[0]) and second_lengths.tolist() == [20800, 6400]
    assert torch.equal(first.cpu(), expected)  # the first batch on the device is its own copy


def test_a_buffer_first_made_under_inference_mode_serves_uploads_outside_it():
    staging = PinnedBatchStaging()
    with torch.inference_mode():
        staging.upload(WAVES, torch.device("cuda"))
    batch, _ = staging.upload(WAVES[:1], torch.device("cuda"))
    assert torch.equal(batch.cpu(), WAVES[0][None])


def test_each_thread_stages_in_its_own_buffer():
    staging = PinnedBatchStaging()
    results: dict[int, torch.Tensor] = {}
    start = threading.Barrier(2)

    def upload(index: int) -> None:
        start.wait()
        batch, _ = staging.upload([WAVES[index]] * 3, torch.device("cuda"))
        results[index] = batch.cpu()

    threads = [threading.Thread(target=upload, args=(i,)) for i in (1, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, batch in results.items():
        assert torch.equal(batch, torch.stack([WAVES[index]] * 3))


def test_head_outputs_on_cuda_equal_the_cpus(tiny_backbone_dir):
    keys = ["asr", "emo", "asr", "emo", "emo"]
    outputs = {}
    for device in ("cpu", "cuda"):
        backbone = load_backbone(str(tiny_backbone_dir("wavlm")), device=device)
        model = MultiAdapterModel(backbone)
        model.add_adapter_set("asr", make_random_adapter_set(backbone, task="asr", method="elp", seed=1))
        model.add_adapter_set("emo", make_random_adapter_set(backbone, task="emotion", method="ep", seed=3))
        outputs[device] = model.head_outputs(WAVES, keys)
    for on_cpu, on_cuda in zip(outputs["cpu"], outputs["cuda"], strict=True):
        torch.testing.assert_close(on_cuda.output, on_cpu.output, atol=1e-4, rtol=1e-4)
