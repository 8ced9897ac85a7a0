"""Weight averaging of adapter sets: the arithmetic, the architecture check, the CLI's output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.model import pad_waveforms
from elp.testing import make_random_adapter_set, seeded_waveform
from training.soup import main, soup


@pytest.fixture(scope="module")
def backbone(tiny_backbone_dir):
    return load_backbone(str(tiny_backbone_dir("wavlm")))


def test_weighted_average_of_every_parameter(backbone) -> None:
    a = make_random_adapter_set(backbone, task="emotion", seed=1)
    b = make_random_adapter_set(backbone, task="emotion", seed=2)
    result = soup([a, b], [3.0, 1.0])
    for name, value in result.state_dict().items():
        expected = (3 * a.state_dict()[name].double() + b.state_dict()[name].double()) / 4
        torch.testing.assert_close(value.double(), expected, rtol=0, atol=1e-7, msg=name)
    assert result.config.metrics == {}


def test_soup_of_one_set_twice_answers_like_the_set(backbone) -> None:
    a = make_random_adapter_set(backbone, task="intent", seed=3)
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("alone", a)
    model.add_adapter_set("soup", soup([a, a]))
    clips = [seeded_waveform(1.0, seed=0), seeded_waveform(0.7, seed=1)]
    waves, lengths = pad_waveforms(clips + clips)
    out = model(waves, lengths, ["alone", "alone", "soup", "soup"])
    torch.testing.assert_close(out["soup"].output, out["alone"].output, rtol=0, atol=1e-6)


def test_different_architectures_are_refused(backbone) -> None:
    a = make_random_adapter_set(backbone, task="emotion", seed=1)
    other_labels = make_random_adapter_set(backbone, task="emotion", labels=["x", "y"], seed=2)
    with pytest.raises(ValueError, match="labels"):
        soup([a, other_labels])
    with pytest.raises(ValueError, match="task"):
        soup([a, make_random_adapter_set(backbone, task="intent", seed=2)])
    with pytest.raises(ValueError, match="at least two"):
        soup([a])
    with pytest.raises(ValueError, match="weight"):
        soup([a, a], [1.0, -1.0])


def test_cli_writes_a_loadable_set_naming_its_members(backbone, tmp_path: Path) -> None:
    folders = []
    for seed in (1, 2):
        folder = tmp_path / f"member-{seed}"
        make_random_adapter_set(backbone, task="asr", seed=seed).save(folder)
        folders.append(str(folder))
    assert main([*folders, "--out", str(tmp_path / "soup")]) == 0
    loaded = AdapterSet.load(tmp_path / "soup")
    assert loaded.config.training["soup"] == {"members": folders, "weights": [1.0, 1.0]}
    assert "weight average of 2 sets" in loaded.config.description
    first, second = (AdapterSet.load(f) for f in folders)
    name = next(n for n, v in loaded.state_dict().items() if v.is_floating_point())
    torch.testing.assert_close(loaded.state_dict()[name], (first.state_dict()[name] + second.state_dict()[name]) / 2)
