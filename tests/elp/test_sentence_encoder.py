"""The sentence encoder (Universal Sentence Encoder lite in PyTorch) and its place in the intent text branch:
the tokenizer is the original's Viterbi segmentation, the converter maps every graph weight, the port gives
the original's embeddings (a reference computed with TF.js, checked when the converted weights are present),
and a set carrying a sentence scorer serves the fused text logits training chose."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from elp import AdapterSet, load_backbone
from elp.convert.sentence_encoder import convert
from elp.string_table import join_strings
from elp.testing import make_random_adapter_set
from elp.text_intent.branch import SentencePart, attach_text_branch
from elp.text_intent.config import SentenceEncoderConfig
from elp.text_intent.sentence_encoder import MAX_PIECES, PieceTokenizer, SentenceEncoder

REFERENCE = Path(__file__).parents[1] / "data" / "sentence_encoder_reference.json"
CONVERTED = Path(os.environ.get("ELP_SENTENCE_ENCODER_DIR", "data/sentence-encoder"))
RESERVED = ["\ufffd", "<s>", "</s>", "x1", "x2", "x3"]


def tiny_tokenizer() -> PieceTokenizer:
    pieces = [*RESERVED, "\u2581turn", "\u2581on", "\u2581the", "\u2581t", "urn", "\u2581", "s", "t", "u", "r", "n"]
    scores = [0.0] * 6 + [-2.0, -2.0, -2.0, -3.0, -3.0, -5.0, -4.0, -6.0, -6.0, -6.0, -6.0]
    return PieceTokenizer(pieces, scores)


def test_tokenizer_takes_the_best_scoring_segmentation():
    tokenizer = tiny_tokenizer()
    assert tokenizer.encode("turn on the") == [6, 7, 8]  # whole words beat "▁t" + "urn" (-2 > -6)
    assert tokenizer.encode("turns") == [6, 12]
    assert tokenizer.encode("") == []


def test_tokenizer_counts_a_run_of_unknown_characters_once():
    tokenizer = tiny_tokenizer()
    assert tokenizer.encode("on??") == [7, 0]
    assert tokenizer.encode("on ? the") == [7, 11, 0, 8]


def small_encoder(seed: int = 0) -> SentenceEncoder:
    config = SentenceEncoderConfig(num_pieces=17, num_piece_bytes=10, vocab_size=19, embedding_dim=8, hidden_dim=16,
                                   ffn_dim=24, heads=2)
    encoder = SentenceEncoder(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return encoder


def test_a_padded_batch_embeds_each_sentence_as_alone():
    encoder, tokenizer = small_encoder(), tiny_tokenizer()
    texts = ["turn on the", "turns", "on", "the the the the turn"]
    batch = encoder.embed(tokenizer, texts)
    alone = torch.cat([encoder.embed(tokenizer, [t]) for t in texts])
    torch.testing.assert_close(batch, alone, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(batch.norm(dim=-1), torch.ones(len(texts)))
    long = encoder.embed(tokenizer, ["on " * (MAX_PIECES + 20)])  # past 128 pieces: the first 128 count
    torch.testing.assert_close(long, encoder.embed(tokenizer, ["on " * MAX_PIECES]))


def write_graph_folder(encoder: SentenceEncoder, folder: Path, pieces: list[str], scores: list[float]) -> None:
    """A TF.js folder holding ``encoder``'s weights under the graph's names and layouts (what the package ships)."""
    k = "module_apply_default/Encoder_en/KonaTransformer/Encode/"
    m = "module/Encoder_en/KonaTransformer/Encode/"
    state = {name: value.numpy() for name, value in encoder.state_dict().items()}
    named = {"module/Embeddings_en": state["embeddings.weight"],
             "module/Encoder_en/hidden_layers/tanh_layer_0/weights": state["pooled.weight"].T,
             "module/Encoder_en/hidden_layers/tanh_layer_0/bias": state["pooled.bias"],
             f"{k}TransformerStack/Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1":
                 encoder.inverse_timescales.numpy()[None, :],
             f"{k}TransformerStack/Layer_1/TransformerLayer/MultiheadAttention/split_heads/split_last_dimension/"
             "Reshape/shape/2": np.array(encoder.config.heads, dtype=np.int32)}
    norm = "layer_prepostprocess/layer_norm/layer_norm_"
    for i in range(2):
        p, base = f"layers.{i}.", f"{k}Layer_{i}/TransformerLayer/"
        stack = f"{k}TransformerStack/Layer_{i}/TransformerLayer/"
        attention = f"{m}Layer_{i}/TransformerLayer/MultiheadAttention/"
        named |= {f"{base}{norm}scale/ConcatPartitions/concat": state[p + "attention_norm.weight"],
                  f"{base}{norm}bias/ConcatPartitions/concat": state[p + "attention_norm.bias"],
                  f"{attention}qkv_transform_single/kernel/part_0": state[p + "qkv.weight"].T[None, None],
                  f"{base}MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat": state[p + "qkv.bias"],
                  f"{attention}output_transform_single/kernel/part_0": state[p + "attention_out.weight"].T[None, None],
                  f"{base}MultiheadAttention/output_transform_single/bias/ConcatPartitions/concat":
                      state[p + "attention_out.bias"],
                  f"{base}FFN/{norm}scale/ConcatPartitions/concat": state[p + "ffn_norm.weight"],
                  f"{base}FFN/{norm}bias/ConcatPartitions/concat": state[p + "ffn_norm.bias"],
                  f"{stack}FFN/conv1/Tensordot/Reshape_1": state[p + "ffn_in.weight"].T,
                  f"{base}FFN/conv1/bias/ConcatPartitions/concat": state[p + "ffn_in.bias"],
                  f"{stack}FFN/conv2/Tensordot/Reshape_1": state[p + "ffn_out.weight"].T,
                  f"{base}FFN/conv2/bias/ConcatPartitions/concat": state[p + "ffn_out.bias"]}
        if p + "residual.weight" in state:
            named |= {f"{base}dense/kernel/ConcatPartitions/concat": state[p + "residual.weight"].T,
                      f"{base}dense/bias/ConcatPartitions/concat": state[p + "residual.bias"]}
    specs, blob = [], b""
    for name, value in named.items():
        value = np.array(value, order="C")
        dtype = "int32" if value.dtype == np.int32 else "float32"
        specs.append({"name": name, "shape": list(value.shape), "dtype": dtype})
        blob += value.astype(np.int32 if dtype == "int32" else np.float32).tobytes()
    folder.mkdir(parents=True)
    (folder / "group1-shard1of2").write_bytes(blob[:1000])
    (folder / "group1-shard2of2").write_bytes(blob[1000:])
    manifest = [{"paths": ["group1-shard1of2", "group1-shard2of2"], "weights": specs}]
    (folder / "model.json").write_text(json.dumps({"modelTopology": {}, "weightsManifest": manifest}))
    vocabulary = [[piece, score if piece != ":" else None] for piece, score in zip(pieces, scores, strict=True)]
    (folder / "vocab.json").write_text(json.dumps(vocabulary))


def test_the_converter_maps_every_graph_weight_back(tmp_path):
    encoder, tokenizer = small_encoder(seed=3), tiny_tokenizer()
    pieces, scores = [*tokenizer.pieces, ":"], [*tokenizer.scores, -1.0]
    write_graph_folder(encoder, tmp_path / "dist", pieces, scores)
    converted, read_pieces, read_scores = convert(tmp_path / "dist")
    assert read_pieces == pieces and read_scores[-1] == 0.0  # a null score is the original's 0
    assert (converted.config.hidden_dim, converted.config.ffn_dim, converted.config.heads) == (16, 24, 2)
    texts = ["turn on the", "the turn"]
    torch.testing.assert_close(converted.embed(tokenizer, texts), encoder.embed(tokenizer, texts))


@pytest.mark.skipif(not (CONVERTED / "model.json").is_file(),
                    reason="needs the converted encoder: python -m elp.convert.sentence_encoder fetch")
def test_the_port_gives_the_original_embeddings():
    encoder, pieces, scores = convert(CONVERTED)
    tokenizer = PieceTokenizer(pieces, scores)
    reference = json.loads(REFERENCE.read_text())
    assert [tokenizer.encode(t) for t in reference["texts"]] == reference["pieces"]
    embeddings = encoder.embed(tokenizer, reference["texts"])
    torch.testing.assert_close(embeddings, torch.tensor(reference["embeddings"]), atol=1e-5, rtol=0)


def test_a_set_with_a_sentence_scorer_serves_the_fused_text_logits(tiny_backbone_dir, tmp_path):
    labels = ["activate_lights_kitchen", "deactivate_lights_kitchen", "activate_lights_bedroom"]
    backbone = load_backbone(tiny_backbone_dir("whisper"))
    asr = make_random_adapter_set(backbone, "asr", seed=1)
    intent = make_random_adapter_set(backbone, "intent", labels=labels, seed=2)
    intent.config.slot_names = ["action", "object", "location"]
    features = ["w:on", "w:off", "w:kitchen", "w:bedroom"]
    generator = torch.Generator().manual_seed(0)
    slot_weights, slot_bias = torch.randn(4, 5, generator=generator), torch.randn(5, generator=generator)
    encoder, tokenizer = small_encoder(seed=4), tiny_tokenizer()
    encoder.config.num_piece_bytes = len(join_strings(tokenizer.pieces))
    part = SentencePart(encoder, tokenizer.pieces, tokenizer.scores, torch.randn(16, 5, generator=generator),
                        torch.randn(5, generator=generator), weight=2.0)
    attach_text_branch(intent, asr, features, {}, slot_weights, slot_bias, 0.5, sentence=part)
    intent.save(tmp_path / "set")
    served = AdapterSet.load(tmp_path / "set").text_branch.classifier()
    incidence = served.incidence
    for text in ["turn on the kitchen", "off bedroom", ""]:
        rows = [features.index(f"w:{w}") for w in text.split() if f"w:{w}" in features]
        words = incidence @ (slot_bias + slot_weights[rows].sum(0))
        sentence = incidence @ (encoder.embed(tokenizer, [text])[0] @ part.slot_weights + part.slot_bias)
        expected = words.log_softmax(-1) + 2.0 * sentence.log_softmax(-1)
        torch.testing.assert_close(served.logits(text), expected, atol=1e-5, rtol=1e-5)


def test_training_chooses_a_sentence_scorer_on_validation_and_stores_it(tiny_backbone_dir, tmp_path):
    from training.intent_text.train import main

    labels = ["activate_lights_kitchen", "deactivate_lights_kitchen"]
    backbone = load_backbone(tiny_backbone_dir("whisper"))
    make_random_adapter_set(backbone, "asr", seed=1).save(tmp_path / "asr")
    intent = make_random_adapter_set(backbone, "intent", labels=labels, seed=2)
    intent.config.slot_names = ["action", "object", "location"]
    intent.save(tmp_path / "intent")
    phrasings = [("train", "turn on the", 0), ("train", "on on the", 0), ("train", "turns the", 1),
                 ("train", "the turn", 1), ("valid", "on the", 0), ("valid", "turn turn", 1)]
    corpus, transcripts, acoustic = [], [], []
    for i, (split, text, label) in enumerate(phrasings):
        corpus.append({"id": f"c{i}", "path": f"c{i}.flac", "duration_s": 1.0, "split": split, "task": "intent",
                       "speaker": "s", "text": text, "label": labels[label], "meta": {}})
        common = {"source": str(tmp_path), "id": f"c{i}", "split": split, "label": labels[label], "text": text}
        transcripts.append(common | {"asr": text})
        acoustic.append(common | {"acoustic": [0.0, 0.0]})
    for name, rows in (("intent.jsonl", corpus), ("t.jsonl", transcripts), ("a.jsonl", acoustic)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = tiny_tokenizer()
    write_graph_folder(small_encoder(seed=5), tmp_path / "dist", tokenizer.pieces, tokenizer.scores)
    assert main(["--intent", str(tmp_path / "intent"), "--asr", str(tmp_path / "asr"), "--corpus", str(tmp_path),
                 "--transcripts", str(tmp_path / "t.jsonl"), "--acoustic", str(tmp_path / "a.jsonl"),
                 "--senses", "0", "--feature-dropout", "0", "--l2", "1e-4", "--sentence-encoder",
                 str(tmp_path / "dist"), "--sentence-l2", "1e-3", "--sentence-weight", "0.5", "2",
                 "--out", str(tmp_path / "out")]) == 0
    saved = AdapterSet.load(tmp_path / "out")
    record = saved.config.training["text_branch"]
    assert record["sentence_weight"] in (0.5, 2.0) and record["sentence_l2"] == 1e-3
    assert saved.config.text_branch.sentence_weight == record["sentence_weight"]
    served = saved.text_branch.classifier()
    assert served.sentence is not None
    assert [int(served.logits(t).argmax()) for t in ("on the", "turn turn")] == [0, 1]
