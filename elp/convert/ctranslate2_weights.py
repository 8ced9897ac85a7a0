"""CTranslate2's ``WhisperSpec`` variables -> ``transformers`` ``WhisperForConditionalGeneration`` state-dict
names (read by :mod:`elp.convert.ctranslate2_format`, written by :mod:`elp.convert.ctranslate2_whisper`).

Self-attention q/k/v are fused in ``linear_0`` as (3d, d) and split here; the fused key bias is dropped because
HF's ``k_proj`` has none (a key bias adds the same ``q.b`` to every logit of a query, so softmax is unchanged).
Cross-attention k/v are fused as (2d, d). The output projection is tied to the token embedding unless the file
holds a different one. Weights come out in float32 (the shipped fp16 upcast is exact).
"""

from __future__ import annotations

import logging
import re

import torch

from elp.convert.ctranslate2_format import CTranslate2Model, ModelBinError

LOG = logging.getLogger("elp.convert.ctranslate2_whisper")


def count_layers(model: CTranslate2Model, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"/layer_(\d+)/")
    found = {int(m.group(1)) for name in model.variables if (m := pattern.match(name))}
    if found != set(range(len(found))):
        raise ModelBinError(f"{prefix} layers are not numbered 0..n-1: {sorted(found)}")
    return len(found)


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).contiguous()


def _linear(sd: dict[str, torch.Tensor], hf: str, m: CTranslate2Model, ct2: str) -> None:
    sd[f"{hf}.weight"] = _f32(m.get(f"{ct2}/weight"))
    sd[f"{hf}.bias"] = _f32(m.get(f"{ct2}/bias"))


def _norm(sd: dict[str, torch.Tensor], hf: str, m: CTranslate2Model, ct2: str) -> None:
    sd[f"{hf}.weight"] = _f32(m.get(f"{ct2}/gamma"))
    sd[f"{hf}.bias"] = _f32(m.get(f"{ct2}/beta"))


def _split_rows(t: torch.Tensor, n: int, what: str) -> list[torch.Tensor]:
    if t.shape[0] % n:
        raise ModelBinError(f"{what}: fused dimension {t.shape[0]} is not divisible by {n}")
    return [_f32(x) for x in torch.chunk(t, n, dim=0)]


def _self_attention(sd: dict[str, torch.Tensor], hf: str, m: CTranslate2Model, ct2: str) -> None:
    """Split the fused (3d, d) q/k/v projection; the key bias is dropped (HF k_proj has none)."""
    q_w, k_w, v_w = _split_rows(m.get(f"{ct2}/linear_0/weight"), 3, f"{ct2}/linear_0/weight")
    q_b, k_b, v_b = _split_rows(m.get(f"{ct2}/linear_0/bias"), 3, f"{ct2}/linear_0/bias")
    if k_b.abs().max() > 0:
        LOG.warning("%s: non-zero key bias dropped (softmax is invariant to it)", ct2)
    sd.update({f"{hf}.q_proj.weight": q_w, f"{hf}.q_proj.bias": q_b, f"{hf}.k_proj.weight": k_w})
    sd.update({f"{hf}.v_proj.weight": v_w, f"{hf}.v_proj.bias": v_b})
    _linear(sd, f"{hf}.out_proj", m, f"{ct2}/linear_1")


def _cross_attention(sd: dict[str, torch.Tensor], hf: str, m: CTranslate2Model, ct2: str) -> None:
    """q is ``linear_0``; k/v are fused (2d, d) in ``linear_1``; the output is ``linear_2``."""
    _linear(sd, f"{hf}.q_proj", m, f"{ct2}/linear_0")
    k_w, v_w = _split_rows(m.get(f"{ct2}/linear_1/weight"), 2, f"{ct2}/linear_1/weight")
    k_b, v_b = _split_rows(m.get(f"{ct2}/linear_1/bias"), 2, f"{ct2}/linear_1/bias")
    if k_b.abs().max() > 0:
        LOG.warning("%s: non-zero key bias dropped (softmax is invariant to it)", ct2)
    sd.update({f"{hf}.k_proj.weight": k_w, f"{hf}.v_proj.weight": v_w, f"{hf}.v_proj.bias": v_b})
    _linear(sd, f"{hf}.out_proj", m, f"{ct2}/linear_2")


def whisper_state_dict(m: CTranslate2Model) -> tuple[dict[str, torch.Tensor], bool]:
    """Map a WhisperSpec model to HF state-dict keys; returns (state_dict, tie_word_embeddings)."""
    if m.spec_name != "WhisperSpec":
        raise ModelBinError(f"expected a WhisperSpec model, got {m.spec_name!r}")
    if not m.variables.get("decoder/pre_norm", torch.ones(1)).all():
        raise ModelBinError("decoder is post-norm; Whisper is pre-norm")
    sd: dict[str, torch.Tensor] = {}
    for side in ("encoder", "decoder"):
        hf_side = f"model.{side}"
        if side == "encoder":
            _linear(sd, f"{hf_side}.conv1", m, "encoder/conv1")
            _linear(sd, f"{hf_side}.conv2", m, "encoder/conv2")
        else:
            sd[f"{hf_side}.embed_tokens.weight"] = _f32(m.get("decoder/embeddings/weight"))
        sd[f"{hf_side}.embed_positions.weight"] = _f32(m.get(f"{side}/position_encodings/encodings"))
        _norm(sd, f"{hf_side}.layer_norm", m, f"{side}/layer_norm")
        for i in range(count_layers(m, side)):
            hf, ct2 = f"{hf_side}.layers.{i}", f"{side}/layer_{i}"
            _self_attention(sd, f"{hf}.self_attn", m, f"{ct2}/self_attention")
            _norm(sd, f"{hf}.self_attn_layer_norm", m, f"{ct2}/self_attention/layer_norm")
            if side == "decoder":
                _cross_attention(sd, f"{hf}.encoder_attn", m, f"{ct2}/attention")
                _norm(sd, f"{hf}.encoder_attn_layer_norm", m, f"{ct2}/attention/layer_norm")
            _linear(sd, f"{hf}.fc1", m, f"{ct2}/ffn/linear_0")
            _linear(sd, f"{hf}.fc2", m, f"{ct2}/ffn/linear_1")
            _norm(sd, f"{hf}.final_layer_norm", m, f"{ct2}/ffn/layer_norm")

    tie = True
    if m.has("decoder/projection/weight"):
        proj = m.get("decoder/projection/weight")
        same = m.resolve("decoder/projection/weight") == m.resolve("decoder/embeddings/weight")
        if not same and not torch.equal(_f32(proj), sd["model.decoder.embed_tokens.weight"]):
            tie = False
            sd["proj_out.weight"] = _f32(proj)
    return sd, tie


