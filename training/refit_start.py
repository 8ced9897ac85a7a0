"""Where a cached refit (``training.cached``) starts: a set on another set's adapters with a fresh head
(``transplant``), or a rebuilt head that answers as the old one did (``warm_start``)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from elp import AdapterSet


def transplant(target: AdapterSet, source: AdapterSet) -> AdapterSet:
    """A fresh-headed set for ``target``'s task and labels on ``source``'s E-, P- and L-adapters.

    Spoken-language understanding on top of a recogniser's representation: an intent set that starts
    from the ASR set's adapters hears words it was never given a command for (s3prl's and Lugosch et
    al.'s ASR-pretrained SLU). Only the head is new; the result is an ordinary self-contained set."""
    if source.config.backbone.get("fingerprint") != target.config.backbone.get("fingerprint"):
        raise ValueError("both sets must be trained on the same backbone")
    config = copy.deepcopy(target.config)
    for part in ("e_adapter", "p_adapter", "l_adapter", "weighted_sum_layers"):
        setattr(config, part, copy.deepcopy(getattr(source.config, part)))
    config.metrics, config.weights_sha256 = {}, None
    config.training = {"adapters_from": {"task": source.task, "description": source.config.description,
                                         "weights_sha256": source.config.weights_sha256}}
    result = AdapterSet(config)
    moved = source.backbone_change_state() | {f"featurizer.{k}": v for k, v in source.featurizer.state_dict().items()}
    missing, unexpected = result.load_state_dict(moved, strict=False)
    if unexpected or any(not name.startswith("head.") for name in missing):
        raise ValueError(f"adapter shapes differ: missing {missing}, unexpected {unexpected}")
    return result


def warm_start(new_head: nn.Module, old_head: nn.Module) -> None:
    """Copy the old head's weights into a rebuilt one: tensors of equal shape as they are; a layer that
    gained inputs (the prosody branch widens the output layer) keeps its old columns first and starts
    the new ones at zero, so the new head's answers equal the old head's until training moves them."""
    old = old_head.state_dict()
    with torch.no_grad():
        for name, tensor in new_head.state_dict().items():
            source = old.get(name)
            if source is None:
                continue
            if source.shape == tensor.shape:
                tensor.copy_(source)
            elif source.dim() == 2 and source.shape[0] == tensor.shape[0] and source.shape[1] < tensor.shape[1]:
                tensor.zero_()
                tensor[:, : source.shape[1]] = source
            else:
                raise ValueError(f"cannot warm-start {name}: {tuple(source.shape)} -> {tuple(tensor.shape)}")
