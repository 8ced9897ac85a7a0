"""Served cohort centring (``training.verify_norm centre``, ``HeadConfig.centred``) and the strictest-population
threshold (``training.verify_calibrate.strictest_threshold``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.tasks.scoring import normalised_scores
from elp.testing import make_random_adapter_set, save_tiny_backbone, seeded_waveform
from training import verify_norm
from training.data.manifest import ManifestRow, write_manifest
from training.verify_calibrate import choose_threshold, strictest_threshold


@pytest.fixture
def speaker_case(tmp_path: Path) -> dict:
    backbone_dir = save_tiny_backbone(tmp_path / "backbone", "whisper")
    make_random_adapter_set(load_backbone(backbone_dir), "verification", seed=5).save(tmp_path / "verify")
    paths = []
    for index in range(8):
        path = tmp_path / f"clip{index}.wav"
        sf.write(path, seeded_waveform(0.8 + 0.15 * index, seed=20 + index).numpy(), 16000)
        paths.append(str(path))
    cohort = [ManifestRow(id=f"c{i}", path=Path(p).name, duration_s=1.0, split="train", task="verification",
                          speaker=f"c{i}", label=f"c{i}") for i, p in enumerate(paths[4:])]
    return {"backbone": str(backbone_dir), "set": str(tmp_path / "verify"), "paths": paths,
            "cohort": str(write_manifest(cohort, tmp_path / "cohort.jsonl")), "root": tmp_path}


def served_embeddings(set_dir: str, backbone: str, paths: list[str]) -> torch.Tensor:
    model = MultiAdapterModel(load_backbone(backbone))
    model.add_adapter_set("set", AdapterSet.load(set_dir))
    waves = [torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in paths]
    return torch.stack([out.embedding.float() for out in model.predict(waves, ["set"] * len(waves))])


def test_centred_set_serves_the_centre_scoring(speaker_case) -> None:
    case = speaker_case
    store = verify_norm.cache(case["set"], case["paths"], case["root"] / "cache.pt", case["backbone"])
    out = str(case["root"] / "centred")
    record = verify_norm.write_centred(case["set"], store, case["cohort"], out, case["backbone"])
    assert record["clips"] == 4 and AdapterSet.load(out).config.head.centred
    plain = served_embeddings(case["set"], case["backbone"], case["paths"][:4])
    cohort = served_embeddings(case["set"], case["backbone"], case["paths"][4:])
    centred = served_embeddings(out, case["backbone"], case["paths"][:4])
    a, b = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 3, 2, 3])
    expected = normalised_scores(plain[a], plain[b], {"method": "centre"}, cohort)
    served = (centred[a] * centred[b]).sum(dim=-1)
    assert torch.allclose(served, expected, atol=2e-3)  # the cache keeps float16 vectors
    assert not torch.allclose(served, (plain[a] * plain[b]).sum(dim=-1), atol=1e-3)  # centring changed the scores
    with pytest.raises(SystemExit, match="centred already"):
        verify_norm.write_centred(out, store, case["cohort"], str(case["root"] / "twice"), case["backbone"])


def test_partly_centred_set_serves_the_centred_first_n_scoring(speaker_case) -> None:
    """``--dims N``: the first N coordinates are centred, the rest (a second branch's part) keep a zero centre;
    served, the set scores as ``choose``'s ``centred-first-N``."""
    case = speaker_case
    store = verify_norm.cache(case["set"], case["paths"], case["root"] / "cache.pt", case["backbone"])
    dims = 10
    out = str(case["root"] / "partly")
    record = verify_norm.write_centred(case["set"], store, case["cohort"], out, case["backbone"], dims=dims)
    assert record["centred_dims"] == dims
    centre = AdapterSet.load(out).head.centre
    assert torch.count_nonzero(centre[dims:]) == 0 and torch.count_nonzero(centre[:dims]) == dims
    plain = served_embeddings(case["set"], case["backbone"], case["paths"][:4])
    cohort = served_embeddings(case["set"], case["backbone"], case["paths"][4:])
    partly = served_embeddings(out, case["backbone"], case["paths"][:4])
    a, b = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 3, 2, 3])
    expected = verify_norm.partly_centred_scores(plain[a], plain[b], cohort, dims)
    assert torch.allclose((partly[a] * partly[b]).sum(dim=-1), expected, atol=2e-3)
    fully = normalised_scores(plain[a], plain[b], {"method": "centre"}, cohort)
    assert not torch.allclose(expected, fully, atol=1e-3)
    assert "centred-first-10" in verify_norm.scorings([10], [10])


def test_centring_refuses_a_cache_of_another_set(speaker_case) -> None:
    case = speaker_case
    other = case["root"] / "other"
    make_random_adapter_set(load_backbone(case["backbone"]), "verification", seed=6).save(other)
    store = verify_norm.cache(str(other), case["paths"], case["root"] / "other.pt", case["backbone"])
    with pytest.raises(SystemExit, match="does not hold"):
        verify_norm.write_centred(case["set"], store, case["cohort"], str(case["root"] / "x"), case["backbone"])


def test_strictest_threshold_holds_the_far_cap_in_every_population() -> None:
    rng = np.random.default_rng(0)

    def population(impostor_mean: float, n: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.concatenate([rng.normal(0.8, 0.05, n), rng.normal(impostor_mean, 0.08, n)])
        return scores, np.concatenate([np.ones(n, int), np.zeros(n, int)])

    readers, telephone = population(0.3, 400), population(0.5, 100)  # the small one's impostors score higher
    chosen = strictest_threshold({"readers": readers, "telephone": telephone}, 0.05, 1.0)
    own = {name: choose_threshold(*pop, 0.05, 1.0)["threshold"] for name, pop in (("readers", readers),
                                                                                ("telephone", telephone))}
    assert chosen["threshold"] == max(own.values()) == own["telephone"]
    assert all(p["far"] <= 0.05 for p in chosen["populations"].values())
    pooled = choose_threshold(np.concatenate([readers[0], telephone[0]]),
                              np.concatenate([readers[1], telephone[1]]), 0.05, 1.0)
    assert pooled["threshold"] < chosen["threshold"]  # the pooled rule follows the larger population
    assert error_at(telephone, pooled["threshold"]) > 0.05


def error_at(population: tuple[np.ndarray, np.ndarray], threshold: float) -> float:
    scores, labels = population
    return float((scores[labels == 0] >= threshold).mean())
