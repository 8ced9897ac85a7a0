"""Diagnosis: which of the encoder's Linear layers make the int8 backbone lose accuracy.

On VALIDATION clips only (the corpus' ``valid`` split; nothing here may be chosen on a test split or
the far/human suites). The float32 backbone, with one adapter set routed (its E-adapter LayerNorms and
P-adapter prompt frames are part of what the quantised Linears see), encodes the clips in batches of
similar length; then, one variant at a time, a single Linear kind of a single layer (or a whole
scheme) runs in int8 and the encoder's per-layer outputs are compared with float32's over real frames:
``rel_last`` = relative error of the last (normed) layer, ``rel_mean`` = mean over layers 1..L (what
the L-adapters read). ``--activations`` prints, per Linear, how outlying its input channels are
(max channel |x| / median channel |x|): what a per-tensor activation scale handles badly.

    python -m benchmarks.int8_diagnosis [--clips 32] [--set asr-default] [--activations] [--per-linear]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.common import CORPUS_DIR, DEFAULT_BACKBONE, REPO_ROOT
from elp.model import pad_waveforms

KINDS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2")


def valid_waves(corpus: Path, task: str, clips: int) -> list[torch.Tensor]:
    """The first ``clips`` validation clips of ``task``, sorted by length (batches of similar length)."""
    from training.int8_calibration import manifest_waveforms

    return sorted(manifest_waveforms(corpus / f"{task}.jsonl", "valid", clips, 16000), key=len)


def encode_states(model, key: str, waves: list[torch.Tensor], batch_size: int) -> list[list[torch.Tensor]]:
    """Per clip, every layer's output over its real frames."""
    per_clip = []
    with torch.no_grad():
        for start in range(0, len(waves), batch_size):
            chunk = waves[start:start + batch_size]
            batch, lengths = pad_waveforms(chunk)
            encoded = model.encode(batch, lengths, [key] * len(chunk))
            for row in range(len(chunk)):
                frames = int(encoded.lengths[row])
                per_clip.append([state[row, :frames].clone() for state in encoded.hidden_states])
    return per_clip


def compare(reference: list[list[torch.Tensor]], got: list[list[torch.Tensor]]) -> dict[str, float]:
    """Relative error of the last layer and mean over layers 1..L, pooled over clips."""
    layers = len(reference[0])
    errors = []
    for index in range(1, layers):
        num = sum(float((g[index] - r[index]).pow(2).sum()) for r, g in zip(reference, got, strict=True))
        den = sum(float(r[index].pow(2).sum()) for r in reference)
        errors.append((num / den) ** 0.5)
    return {"rel_last": round(errors[-1], 4), "rel_mean": round(statistics.mean(errors), 4)}


def activation_outliers(model, key: str, waves: list[torch.Tensor], batch_size: int) -> list[tuple[str, float, float]]:
    """(Linear, max |x|, max channel / median channel of per-channel max |x|) for every encoder Linear."""
    maxima: dict[str, torch.Tensor] = {}
    handles = []
    for index, layer in enumerate(model.backbone.encoder_layers()):
        for name, module in layer.named_modules():
            if isinstance(module, torch.nn.Linear):
                label = f"{index}.{name}"

                def hook(_module, inputs, label=label):
                    channel_max = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
                    maxima[label] = torch.maximum(maxima[label], channel_max) if label in maxima else channel_max

                handles.append(module.register_forward_pre_hook(hook))
    encode_states(model, key, waves, batch_size)
    for handle in handles:
        handle.remove()
    return [(label, float(m.max()), float(m.max() / m.median().clamp_min(1e-6))) for label, m in maxima.items()]


def build_model(backbone, store: Path, key: str):
    from elp import AdapterSet, MultiAdapterModel

    model = MultiAdapterModel(backbone).eval()
    model.add_adapter_set(key, AdapterSet.load(store / key))
    return model


def quantize_only(backbone, wanted: set[str], scheme: str):
    """A copy of ``backbone`` with only the Linears named ``"<layer>.<kind>"`` in ``wanted`` quantised."""
    from elp.backbones.quantize import quantize_backbone

    copied = copy.deepcopy(backbone)
    keep = copied.int8_linear_names

    def names(layer):
        index = copied.encoder_layers().index(layer)
        return {name for name in keep(layer) if f"{index}.{name}" in wanted}

    copied.int8_linear_names = names  # type: ignore[method-assign]
    return quantize_backbone(copied, scheme)


def compare_schemes(backbone, model, reference, waves, layers: int, args: argparse.Namespace) -> int:
    """Every scheme of ``scheme_variants``: hidden-state error, and valid CER/WER with ``--cer N``."""
    from elp.backbones.calibration import Int8Calibration, linear_input_maxima
    from elp.backbones.quantize import quantize_backbone
    from training.evaluate import evaluate_adapter
    from training.int8_calibration import mixed_waveforms

    corpus = Path(args.corpus)
    tasks = args.calibration_tasks or [args.task]
    train = mixed_waveforms([corpus / f"{task}.jsonl" for task in tasks], "train", args.calibration_clips,
                            backbone.sample_rate, args.calibration_seed)
    calibration = Int8Calibration(linear_input_maxima(backbone, train), set(), backbone.identity.fingerprint,
                                  f"{'+'.join(tasks)} train, {args.calibration_clips} each")
    schemes = {"float32": None, **scheme_variants(backbone, calibration, layers)}
    if args.variants:
        schemes = {label: spec for label, spec in schemes.items() if label == "float32" or label in args.variants}
    for label, spec in schemes.items():
        quantized = backbone if spec is None else quantize_backbone(copy.deepcopy(backbone), *spec)
        candidate = build_model(quantized, Path(args.store), args.set)
        line = f"{label:28s} {compare(reference, encode_states(candidate, args.set, waves, args.batch_size))}"
        if args.cer:
            result = evaluate_adapter(candidate, args.set, corpus, "valid", None, max_clips=args.cer)
            metrics = ("cer", "wer", "accuracy", "eer")
            line += " " + " ".join(f"{k} {result[k]:.4f}" for k in metrics if k in result)
            line += f" compute {result['compute_seconds']:.1f} s"
        print(line, flush=True)
    return 0


def scheme_variants(backbone, calibration, layers: int) -> dict[str, tuple]:
    """Whole schemes to compare: quantize_backbone's (scheme, calibration, alpha, full_range) by label."""
    from elp.backbones.calibration import Int8Calibration, find_calibration

    shipped = find_calibration(backbone, None)

    def variant(keep: set[str], alpha: float = 0.5, smooth: tuple[str, ...] = KINDS, full_range: bool = True):
        maxima = {name: value for name, value in calibration.maxima.items() if name.split(".", 1)[1] in smooth}
        return ("int8", Int8Calibration(maxima, keep, calibration.fingerprint, calibration.source), alpha, full_range)

    return {
        **({"shipped (ELP_DTYPE=int8)": ("int8", Int8Calibration.load(shipped, backbone), 0.5, None)}
           if shipped else {}),
        "plain (7-bit activations)": ("int8-plain", None, 0.5, False),
        "plain, 3.fc2 float": variant({"3.fc2"}, smooth=(), full_range=False),
        "smooth a=0.5, 7-bit": variant(set(), full_range=False),
        "8-bit activations": variant(set(), smooth=()),
        "8-bit, smooth a=0.5": variant(set()),
        "8-bit, smooth a=0.4": variant(set(), alpha=0.4),
        "8-bit, smooth a=0.6": variant(set(), alpha=0.6),
        "8-bit, smooth a=0.5, 3.fc2 float": variant({"3.fc2"}),
        "8-bit, smooth fc2 only": variant(set(), smooth=("fc2",)),
        "8-bit, smooth a=0.5, layer 0 float": variant({f"0.{kind}" for kind in KINDS}),
        "8-bit, smooth a=0.5, layer 0 + 3.fc2 float": variant({f"0.{kind}" for kind in KINDS} | {"3.fc2"}),
        "8-bit, smooth a=0.5, layer 0 + every fc2 float": variant({f"0.{kind}" for kind in KINDS}
                                                                  | {f"{i}.fc2" for i in range(layers)}),
        "8-bit, smooth a=0.5, 0.fc2 + 3.fc2 float": variant({"0.fc2", "3.fc2"}),
        "8-bit, smooth a=0.5, layer 0 fc1/fc2 + 3.fc2 float": variant({"0.fc1", "0.fc2", "3.fc2"}),
        "8-bit, smooth a=0.5, layers 0 + 5 + 3.fc2 float": variant({f"{i}.{kind}" for i in (0, 5) for kind in KINDS}
                                                                   | {"3.fc2"}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=str(REPO_ROOT / DEFAULT_BACKBONE))
    parser.add_argument("--store", default=str(REPO_ROOT / "adapters_store"))
    parser.add_argument("--set", default="asr-default")
    parser.add_argument("--task", default="asr")
    parser.add_argument("--corpus", default=str(CORPUS_DIR))
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--scheme", default="int8-plain", help="for the one-kind-at-a-time mode")
    parser.add_argument("--activations", action="store_true")
    parser.add_argument("--per-linear", action="store_true", help="one layer x kind at a time (slow)")
    parser.add_argument("--schemes", action="store_true", help="whole schemes instead of one Linear kind at a time")
    parser.add_argument("--calibration-clips", type=int, default=64, help="corpus TRAIN clips per task for the maxima")
    parser.add_argument("--calibration-tasks", nargs="*", default=None, help="tasks mixed (default: --task)")
    parser.add_argument("--calibration-seed", type=int, default=None, help="seeded sample (default: first clips)")
    parser.add_argument("--variants", nargs="*", default=None, help="labels of scheme_variants to run")
    parser.add_argument("--cer", type=int, default=0, help="also evaluate each scheme on the first N valid clips")
    args = parser.parse_args(argv)
    from elp import load_backbone

    torch.manual_seed(0)
    backbone = load_backbone(args.backbone)
    waves = valid_waves(Path(args.corpus), args.task, args.clips)
    model = build_model(backbone, Path(args.store), args.set)
    reference = encode_states(model, args.set, waves, args.batch_size)
    if args.activations:
        for label, peak, ratio in activation_outliers(model, args.set, waves, args.batch_size):
            print(f"act {label:24s} max|x| {peak:8.2f}  max/median channel {ratio:7.1f}", flush=True)
    layers = len(backbone.encoder_layers())
    if args.schemes:
        return compare_schemes(backbone, model, reference, waves, layers, args)
    every = {f"{i}.{kind}" for i in range(layers) for kind in KINDS}
    variants: dict[str, set[str]] = {"all": every}
    variants.update({f"kind {kind}": {f"{i}.{kind}" for i in range(layers)} for kind in KINDS})
    variants.update({f"layer {i}": {f"{i}.{kind}" for kind in KINDS} for i in range(layers)})
    if args.per_linear:
        variants.update({f"only {name}": {name} for name in sorted(every)})
    for label, wanted in variants.items():
        quantized = build_model(quantize_only(backbone, wanted, args.scheme), Path(args.store), args.set)
        print(f"{label:28s} {compare(reference, encode_states(quantized, args.set, waves, args.batch_size))}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
