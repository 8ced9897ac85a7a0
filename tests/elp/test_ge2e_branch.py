"""The GE2E voice branch (elp.heads.ge2e) and its converter (elp.convert.ge2e_branch): the front end equals
the published recipe's (librosa's Slaney filters, resemblyzer's windows), the converted network answers
as resemblyzer does, rows are independent, and a set carrying it round-trips through safetensors + JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from elp.convert import ge2e_branch
from elp.heads.ge2e import (
    HOP,
    MEL_BANDS,
    PARTIAL_FRAMES,
    Ge2eBranch,
    Ge2eConfig,
    partial_starts,
    raise_level,
    slaney_mel_filterbank,
)
from elp.heads.voice import branch_from_record
from elp.testing import seeded_waveform, voice_rows_alone_and_in_a_batch, voice_set_round_trip

SMALL = Ge2eConfig(hidden=16, layers=2, embedding_dim=12)


def small_branch(seed: int = 0) -> Ge2eBranch:
    torch.manual_seed(seed)
    return Ge2eBranch(SMALL).eval()


def test_filterbank_is_librosas_slaney_mel():
    librosa = pytest.importorskip("librosa")
    expected = librosa.filters.mel(sr=16000, n_fft=400, n_mels=MEL_BANDS)
    assert np.allclose(slaney_mel_filterbank().numpy(), expected, atol=1e-8)


@pytest.mark.parametrize("samples", [100, 16000, 23_000, 25_599, 25_600, 41_000, 160_000])
def test_windows_are_resemblyzers(samples):
    encoder = pytest.importorskip("resemblyzer.voice_encoder")
    _, mel_slices = encoder.VoiceEncoder.compute_partial_slices(samples, rate=1.3, min_coverage=0.75)
    starts, padded = partial_starts(samples)
    assert starts == [s.start for s in mel_slices]
    assert padded == (starts[-1] + PARTIAL_FRAMES) * HOP


def test_level_is_raised_never_lowered():
    quiet = seeded_waveform(1.0, seed=1) * 1e-3
    raised = raise_level(quiet)
    dbfs = 20 * math.log10(float(raised.pow(2).mean().sqrt()))
    assert dbfs == pytest.approx(-30.0, abs=0.01)
    loud = quiet * 300
    assert torch.equal(raise_level(loud), loud)
    assert torch.equal(raise_level(torch.zeros(50)), torch.zeros(50))  # silence: no division by zero


def test_rows_do_not_depend_on_batch_mates_or_padding():
    together, alone = voice_rows_alone_and_in_a_batch(small_branch())
    assert torch.allclose(together[0], alone[0], atol=1e-6)
    assert torch.allclose(together.norm(dim=1), torch.ones(2), atol=1e-5)
    assert float(together[0] @ together[1]) < 0.9999  # different clips, different answers


def test_branch_runs_in_bfloat16_close_to_float32():
    branch = small_branch(seed=3)
    wave = seeded_waveform(2.2, seed=12).unsqueeze(0)
    with torch.no_grad():
        full = branch(wave, torch.tensor([wave.shape[1]]))
        half = branch.to(torch.bfloat16)(wave, torch.tensor([wave.shape[1]]))
    assert half.dtype == torch.float32  # the answer is float32 whatever the weights' dtype
    assert float(torch.nn.functional.cosine_similarity(full, half)) > 0.99


def test_converted_checkpoint_answers_as_resemblyzer():
    """The published weights through this branch give resemblyzer's own embedding (trimming aside)."""
    pytest.importorskip("resemblyzer")
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume

    branch = ge2e_branch.branch_from_checkpoint(ge2e_branch.installed_checkpoint())
    reference = VoiceEncoder("cpu", verbose=False)
    for seconds, seed in ((0.8, 5), (4.3, 6)):
        wave = seeded_waveform(seconds, seed=seed) * 0.05
        with torch.no_grad():
            mine = branch(wave.unsqueeze(0), torch.tensor([wave.numel()]))[0].numpy()
        theirs = reference.embed_utterance(normalize_volume(wave.numpy(), -30, increase_only=True))
        assert float(mine @ theirs) > 0.9999


def test_converter_reads_a_checkpoint_without_running_code_and_writes_a_branch_folder(tmp_path):
    source = small_branch(seed=7)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    checkpoint = tmp_path / "ge2e.pt"
    torch.save({"step": 3, "model_state": state | {"similarity_weight": torch.ones(1)}}, checkpoint)
    branch = ge2e_branch.branch_from_checkpoint(checkpoint)
    assert branch.config == SMALL
    ge2e_branch.write_branch(branch, tmp_path / "out", checkpoint)
    record = json.loads((tmp_path / "out" / "voice_branch.json").read_text())
    assert record["config"]["kind"] == "ge2e" and "Apache-2.0" in record["licence"]
    from training.voice_fusion import load_branch

    loaded = load_branch(tmp_path / "out")
    wave = seeded_waveform(1.7, seed=8)
    with torch.no_grad():
        assert torch.allclose(loaded(wave.unsqueeze(0), torch.tensor([wave.numel()])),
                              source(wave.unsqueeze(0), torch.tensor([wave.numel()])), atol=1e-6)
    rebuilt = branch_from_record(record["config"])
    assert isinstance(rebuilt, Ge2eBranch) and rebuilt.config == SMALL


@pytest.mark.parametrize("variant", ["whisper-postln"])
def test_set_with_a_ge2e_branch_round_trips_and_fuses(backbone, tmp_path):
    served, expected, head = voice_set_round_trip(backbone, small_branch(seed=9), 0.5, tmp_path / "speaker")
    assert head["voice_kind"] == "ge2e" and served == pytest.approx(expected, abs=1e-4)
