"""Parameter accounting: trained parameters per component against the frozen backbone.

``python -m elp.params`` prints the table for the base-size backbones the paper uses (built from
their published config values on PyTorch's meta device: no weights, no memory, no network).
"""

from __future__ import annotations

import argparse

import torch
from transformers import (
    HubertConfig,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
    WhisperConfig,
    WhisperModel,
)

from elp.adapter_set import AdapterSet
from elp.config import config_for_method
from elp.tasks import get_task, set_task_names


def base_size_backbones() -> dict[str, tuple[str, torch.nn.Module]]:
    """Published base-size configurations (WavLM Base+ shares WavLM Base's architecture)."""
    with torch.device("meta"):
        whisper = WhisperModel(WhisperConfig(
            d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048, decoder_layers=6,
            decoder_attention_heads=8, decoder_ffn_dim=2048, num_mel_bins=80, vocab_size=51865,
            max_source_positions=1500,
        )).get_encoder()
        return {
            "WavLM Base+": ("wavlm", WavLMModel(WavLMConfig())),
            "wav2vec 2.0 Base": ("wav2vec2", Wav2Vec2Model(Wav2Vec2Config())),
            "HuBERT Base": ("hubert", HubertModel(HubertConfig())),
            "Whisper base (encoder)": ("whisper", whisper),
        }


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def adapter_report(model_type: str, hidden_size: int, num_layers: int, method: str, task: str) -> dict[str, int]:
    """Trained parameters of one adapter set, by component, for a backbone of these sizes."""
    identity = {"model_type": model_type, "hidden_size": hidden_size, "num_layers": num_layers, "fingerprint": "-"}
    config = config_for_method(method, task, identity, **get_task(task).example_fields(get_task(task).typical_outputs))
    with torch.device("meta"):
        return AdapterSet(config).parameter_report()


def parameter_table(methods: tuple[str, ...] = ("elp", "el", "e", "l", "p"), task: str = "asr") -> list[dict]:
    rows = []
    for name, (model_type, model) in base_size_backbones().items():
        config = model.config
        hidden = getattr(config, "d_model", None) if model_type == "whisper" else config.hidden_size
        layers = config.encoder_layers if model_type == "whisper" else config.num_hidden_layers
        backbone = count_parameters(model)
        for method in methods:
            report = adapter_report(model_type, hidden, layers, method, task)
            rows.append({"backbone": name, "backbone_params": backbone, "method": method, **report,
                         "ratio": report["total"] / backbone})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="asr", choices=set_task_names())
    parser.add_argument("--methods", nargs="+", default=["elp", "el", "e", "l", "p"])
    args = parser.parse_args(argv)
    print(f"trained parameters per adapter set ({args.task} head), against the frozen backbone\n")
    print("| backbone | params | method | E | L / weighted sum | P | head | total | % of backbone |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in parameter_table(tuple(args.methods), args.task):
        layer_part = r.get("l_adapters", r.get("weighted_sum", 0))
        print(f"| {r['backbone']} | {r['backbone_params'] / 1e6:.2f}M | {r['method']} | {r['e_adapters'] / 1e6:.2f}M | "
              f"{layer_part / 1e6:.2f}M | {r['p_adapter'] / 1e6:.3f}M | {r['head'] / 1e6:.3f}M | "
              f"{r['total'] / 1e6:.2f}M | {100 * r['ratio']:.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
