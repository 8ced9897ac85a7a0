"""Tests for the CTranslate2 Whisper converter on a tiny model written in the v6 format here.

The writer below is an independent implementation of the format (from CTranslate2's
``ModelSpec._serialize`` layout), so a reader bug is not mirrored by the test. No network and
no big PyPI packages are needed.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from elp.convert import ctranslate2_whisper as cw

transformers = pytest.importorskip("transformers")
from transformers import WhisperConfig, WhisperForConditionalGeneration  # noqa: E402

D, HEADS, FFN, VOCAB, MELS, SRC_POS, TGT_POS = 16, 2, 32, 265, 8, 20, 12
_DTYPE_IDS = {
    np.dtype("float32"): 0,
    np.dtype("int8"): 1,
    np.dtype("int16"): 2,
    np.dtype("int32"): 3,
    np.dtype("float16"): 4,
}


def _string(s: str) -> bytes:
    raw = s.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_model_bin(
    path: Path,
    variables: dict[str, np.ndarray],
    aliases: dict[str, str],
    spec: str = "WhisperSpec",
    revision: int = 3,
    version: int = 6,
) -> None:
    """Write a CTranslate2 binary model: header, sorted variables, then aliases."""
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", revision), struct.pack("<I", len(variables))]
    for name in sorted(variables):
        value = np.ascontiguousarray(variables[name])
        out += [_string(name), struct.pack("<B", value.ndim)]
        out += [struct.pack("<I", dim) for dim in value.shape]
        out += [struct.pack("<B", _DTYPE_IDS[value.dtype]), struct.pack("<I", value.nbytes), value.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in sorted(aliases.items()):
        out += [_string(alias), _string(target)]
    path.write_bytes(b"".join(out))


def _tiny_hf_model(seed: int = 0) -> WhisperForConditionalGeneration:
    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=VOCAB,
        num_mel_bins=MELS,
        d_model=D,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS,
        encoder_ffn_dim=FFN,
        decoder_ffn_dim=FFN,
        max_source_positions=SRC_POS,
        max_target_positions=TGT_POS,
        pad_token_id=256,
        bos_token_id=256,
        eos_token_id=256,
        decoder_start_token_id=257,
    )
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # make every bias/norm non-trivial so a mis-mapping shows up
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.normal_(0.0, 0.5)
            # round to fp16 so the fp16 file holds the source values exactly
            p.copy_(p.half().float())
    return model


def _to_ct2(model: WhisperForConditionalGeneration) -> dict[str, np.ndarray]:
    """The HF -> CTranslate2 WhisperSpec mapping, fp16 like the shipped files, fused q/k/v."""
    sd = {k: v.detach().half().numpy() for k, v in model.state_dict().items()}
    v: dict[str, np.ndarray] = {}

    def lin(ct2: str, hf: str) -> None:
        v[f"{ct2}/weight"], v[f"{ct2}/bias"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def norm(ct2: str, hf: str) -> None:
        v[f"{ct2}/gamma"], v[f"{ct2}/beta"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    zeros = np.zeros(D, np.float16)
    for side in ("encoder", "decoder"):
        hs = f"model.{side}"
        v[f"{side}/num_heads"] = np.array(HEADS, np.int16)
        v[f"{side}/position_encodings/encodings"] = sd[f"{hs}.embed_positions.weight"]
        norm(f"{side}/layer_norm", f"{hs}.layer_norm")
        c, h = f"{side}/layer_0", f"{hs}.layers.0"
        a = f"{h}.self_attn"
        v[f"{c}/self_attention/linear_0/weight"] = np.concatenate(
            [sd[f"{a}.q_proj.weight"], sd[f"{a}.k_proj.weight"], sd[f"{a}.v_proj.weight"]]
        )
        v[f"{c}/self_attention/linear_0/bias"] = np.concatenate([sd[f"{a}.q_proj.bias"], zeros, sd[f"{a}.v_proj.bias"]])
        lin(f"{c}/self_attention/linear_1", f"{a}.out_proj")
        norm(f"{c}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
        lin(f"{c}/ffn/linear_0", f"{h}.fc1")
        lin(f"{c}/ffn/linear_1", f"{h}.fc2")
        norm(f"{c}/ffn/layer_norm", f"{h}.final_layer_norm")
        if side == "decoder":
            x = f"{h}.encoder_attn"
            lin(f"{c}/attention/linear_0", f"{x}.q_proj")
            v[f"{c}/attention/linear_1/weight"] = np.concatenate([sd[f"{x}.k_proj.weight"], sd[f"{x}.v_proj.weight"]])
            v[f"{c}/attention/linear_1/bias"] = np.concatenate([zeros, sd[f"{x}.v_proj.bias"]])
            lin(f"{c}/attention/linear_2", f"{x}.out_proj")
            norm(f"{c}/attention/layer_norm", f"{h}.encoder_attn_layer_norm")
    lin("encoder/conv1", "model.encoder.conv1")
    lin("encoder/conv2", "model.encoder.conv2")
    v["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    for flag, value in {"pre_norm": 1, "activation": 3, "scale_embeddings": 0, "alibi": 0}.items():
        v[f"decoder/{flag}"] = np.array(value, np.int8)
    v["decoder/alignment_layer"] = np.array(-1, np.int16)
    return v


_ALIASES = {"decoder/projection/weight": "decoder/embeddings/weight"}


def _tokenizer_json(path: Path) -> None:
    """A byte-level BPE tokenizer with Whisper's special tokens at ids 256.. (no merges)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(alphabet))}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        "<|en|>",
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nocaptions|>",
        "<|notimestamps|>",
    ]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    assert tok.get_vocab_size() == VOCAB
    tok.save(str(path))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ct2")
    model = _tiny_hf_model()
    variables = _to_ct2(model)
    write_model_bin(root / "model.bin", variables, _ALIASES)
    _tokenizer_json(root / "tokenizer.json")
    (root / "config.json").write_text(
        json.dumps({"suppress_ids": [1, 2], "suppress_ids_begin": [220 % VOCAB, 256], "alignment_heads": [[0, 1]]})
    )
    return {"root": root, "model": model, "variables": variables}


def test_read_model_bin_matches_written(tiny: dict) -> None:
    m = cw.read_model_bin(tiny["root"] / "model.bin")
    assert (m.binary_version, m.spec_name, m.revision) == (6, "WhisperSpec", 3)
    assert set(m.variables) == set(tiny["variables"])
    for name, value in tiny["variables"].items():
        assert m.variables[name].numpy().dtype == value.dtype
        np.testing.assert_array_equal(m.variables[name].numpy(), value)
    assert torch.equal(m.get("decoder/projection/weight"), m.get("decoder/embeddings/weight"))


def test_convert_state_dict_and_outputs(tiny: dict, tmp_path: Path) -> None:
    sums = cw.convert(tiny["root"] / "model.bin", tmp_path, config_json=tiny["root"] / "config.json")
    assert {"model.safetensors", "config.json", "generation_config.json"} <= set(sums)
    assert cw.read_sums(tmp_path) == sums and cw.sums_match(tmp_path)

    src = tiny["model"]
    out, info = WhisperForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info
    assert out.dtype == torch.float32
    got, want = out.state_dict(), src.state_dict()
    assert set(got) == set(want)
    for key in want:
        if key.endswith("k_proj.bias"):  # not a parameter in HF Whisper
            continue
        assert torch.equal(got[key], want[key]), key
    assert "model.encoder.layers.0.self_attn.k_proj.bias" not in got
    # the q/k/v split: each third of the fused matrix lands in its own projection
    fused = tiny["variables"]["encoder/layer_0/self_attention/linear_0/weight"]
    for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
        np.testing.assert_array_equal(
            got[f"model.encoder.layers.0.self_attn.{proj}.weight"].numpy(), fused[i * D : (i + 1) * D]
        )
    assert out.config.tie_word_embeddings
    assert out.proj_out.weight.data_ptr() == out.model.decoder.embed_tokens.weight.data_ptr()
    assert out.generation_config.suppress_tokens == [1, 2]

    torch.manual_seed(1)
    feats = torch.randn(2, MELS, 2 * SRC_POS)
    dec = torch.randint(0, VOCAB, (2, 5))
    with torch.no_grad():
        a = src(input_features=feats, decoder_input_ids=dec).logits
        b = out(input_features=feats, decoder_input_ids=dec).logits
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_nonzero_key_bias_is_dropped_without_changing_outputs(tiny: dict, tmp_path: Path) -> None:
    variables = dict(tiny["variables"])
    bias = variables["encoder/layer_0/self_attention/linear_0/bias"].copy()
    bias[D : 2 * D] = 0.75  # a key bias only shifts each query's logits by a constant
    variables["encoder/layer_0/self_attention/linear_0/bias"] = bias
    write_model_bin(tmp_path / "model.bin", variables, _ALIASES)
    cw.convert(tmp_path / "model.bin", tmp_path / "out")
    out = WhisperForConditionalGeneration.from_pretrained(tmp_path / "out")
    feats = torch.randn(1, MELS, 2 * SRC_POS)
    with torch.no_grad():
        a = tiny["model"].model.encoder(feats).last_hidden_state
        b = out.model.encoder(feats).last_hidden_state
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_processor_and_generate(tiny: dict, tmp_path: Path) -> None:
    from transformers import WhisperProcessor

    r = tiny["root"]
    cw.convert(r / "model.bin", tmp_path, config_json=r / "config.json", tokenizer_json=r / "tokenizer.json")
    proc = WhisperProcessor.from_pretrained(tmp_path)
    assert proc.feature_extractor.feature_size == MELS
    assert proc.tokenizer.convert_tokens_to_ids("<|startoftranscript|>") == 257
    model = WhisperForConditionalGeneration.from_pretrained(tmp_path)
    assert model.config.decoder_start_token_id == 257 and model.config.eos_token_id == 256
    assert model.generation_config.no_timestamps_token_id == 264
    with torch.no_grad():
        ids = model.generate(torch.randn(1, MELS, 2 * SRC_POS), max_new_tokens=3)
    assert ids.shape[0] == 1
    proc.batch_decode(ids, skip_special_tokens=True)


def test_split_parts_concatenate(tiny: dict, tmp_path: Path) -> None:
    data = (tiny["root"] / "model.bin").read_bytes()
    cut = len(data) // 3  # an arbitrary byte offset, mid-tensor
    (tmp_path / "model.bin.part1").write_bytes(data[:cut])
    (tmp_path / "model.bin.part2").write_bytes(data[cut:])
    whole = cw.read_model_bin(tiny["root"] / "model.bin")
    split = cw.read_model_bin([tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"])
    assert all(torch.equal(split.variables[k], v) for k, v in whole.variables.items())
    with pytest.raises(cw.ModelBinError):
        cw.read_model_bin([tmp_path / "model.bin.part2", tmp_path / "model.bin.part1"])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[: len(b) - 1000], "truncated"),
        (lambda b: b[:40], "truncated"),
        (lambda b: b"", "truncated"),
        (lambda b: struct.pack("<I", 5) + b[4:], "unsupported CTranslate2 binary version 5"),
        (lambda b: b + b"\0\0\0\0", "unexpected bytes"),
    ],
    ids=["truncated-tail", "truncated-header", "empty", "bad-version", "trailing-garbage"],
)
def test_corrupt_model_bin_gives_clear_error(tiny: dict, tmp_path: Path, mutate, message: str) -> None:
    bad = tmp_path / "model.bin"
    bad.write_bytes(mutate((tiny["root"] / "model.bin").read_bytes()))
    with pytest.raises(cw.ModelBinError, match=message):
        cw.read_model_bin(bad)
    assert cw.main(["--model-bin", str(bad), "--out", str(tmp_path / "out")]) == 1


def test_missing_variable_is_reported(tiny: dict, tmp_path: Path) -> None:
    variables = {k: v for k, v in tiny["variables"].items() if k != "encoder/conv2/bias"}
    write_model_bin(tmp_path / "model.bin", variables, _ALIASES)
    with pytest.raises(cw.ModelBinError, match="encoder/conv2/bias"):
        cw.convert(tmp_path / "model.bin", tmp_path / "out")


def test_int8_weights_are_dequantised() -> None:
    w = torch.tensor([[10, -20], [30, 40]], dtype=torch.int8)
    scale = torch.tensor([2.0, 4.0])
    m = cw.CTranslate2Model(6, "WhisperSpec", 3, {"x/weight": w, "x/weight_scale": scale}, {})
    torch.testing.assert_close(m.get("x/weight"), torch.tensor([[5.0, -10.0], [7.5, 10.0]]))


def test_cli_is_idempotent_and_verifies_checksums(
    tiny: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    r, out = tiny["root"], tmp_path / "out"
    files = cw.PackageFiles([r / "model.bin"], r / "config.json", r / "tokenizer.json")
    monkeypatch.setattr(cw, "find_package_files", lambda package: files)
    monkeypatch.setattr(cw, "load_known_checksums", lambda: {})
    assert cw.main(["--package", "tiny.en", "--out", str(out)]) == 0
    weights = out / "model.safetensors"
    digest, mtime = cw.read_sums(out)["model.safetensors"], weights.stat().st_mtime_ns
    assert cw.main(["--package", "tiny.en", "--out", str(out)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == mtime

    monkeypatch.setattr(cw, "load_known_checksums", lambda: {"tiny.en": {"outputs": {"model.safetensors": digest}}})
    assert cw.main(["--package", "tiny.en", "--out", str(out)]) == 0
    wrong = {"tiny.en": {"inputs": {"model.bin": "0" * 64}}}
    monkeypatch.setattr(cw, "load_known_checksums", lambda: wrong)
    assert cw.main(["--package", "tiny.en", "--out", str(out)]) == 1
    assert "expected sha256" in capsys.readouterr().err
    assert cw.main(["--package", "tiny.en", "--out", str(out), "--no-verify"]) == 0


def test_known_checksums_file_is_well_formed() -> None:
    table = cw.load_known_checksums()
    assert set(table) <= set(cw.PACKAGES)
    for entry in table.values():
        for digest in [*entry.get("inputs", {}).values(), *entry.get("outputs", {}).values()]:
            assert len(digest) == 64 and int(digest, 16) >= 0
