"""Tiny real backbones and random adapter sets for tests (transformers' own tests do the same).

The configs are the real classes with small sizes; the weights are random but saved and loaded
through ``save_pretrained`` / ``from_pretrained`` exactly as a downloaded checkpoint would be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
from elp.backbones.base import Backbone
from elp.config import config_for_method
from elp.model import pad_waveforms
from elp.tasks import get_task
from elp.tasks.asr import CTC_VOCAB

FAMILIES = ("wav2vec2", "hubert", "wavlm", "whisper")
__all__ = ["CTC_VOCAB", "FAMILIES", "make_random_adapter_set", "outputs_per_row", "save_tiny_backbone",
           "seeded_waveform", "spelled_log_probs", "tiny_config"]

_W2V_COMMON = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(32, 32, 32),
    conv_stride=(5, 8, 8),
    conv_kernel=(10, 8, 8),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    layerdrop=0.1,
    vocab_size=32,
)


def tiny_config(family: str, stable_layer_norm: bool = False):
    """A small config of the real class; ``stable_layer_norm`` selects the pre-LN ("large") variant."""
    norm = dict(do_stable_layer_norm=True, feat_extract_norm="layer") if stable_layer_norm else dict(
        do_stable_layer_norm=False, feat_extract_norm="group"
    )
    if family == "wav2vec2":
        return Wav2Vec2Config(**_W2V_COMMON, **norm)
    if family == "hubert":
        return HubertConfig(**_W2V_COMMON, **norm)
    if family == "wavlm":
        return WavLMConfig(**_W2V_COMMON, **norm, num_buckets=32, max_bucket_distance=64)
    if family == "whisper":
        return WhisperConfig(
            d_model=32, encoder_layers=3, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
            decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80, vocab_size=64,
            max_source_positions=1500, max_target_positions=32, encoder_layerdrop=0.1,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, suppress_tokens=[],
            begin_suppress_tokens=[],
        )
    raise ValueError(f"unknown family {family!r}")


def save_tiny_backbone(
    folder: str | Path, family: str = "wavlm", stable_layer_norm: bool = False, seed: int = 0
) -> Path:
    """Write a tiny randomly initialised checkpoint of ``family`` to ``folder`` and return it."""
    torch.manual_seed(seed)
    config = tiny_config(family, stable_layer_norm)
    model_class = {"wav2vec2": Wav2Vec2Model, "hubert": HubertModel, "wavlm": WavLMModel, "whisper": WhisperModel}
    model = model_class[family](config)
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder


def make_random_adapter_set(
    backbone: Backbone,
    task: str,
    method: str = "elp",
    labels: list[str] | None = None,
    seed: int = 0,
    num_prompt_frames: int = 4,
    prompt_position: str = "prefix",
    scale: float = 0.05,
    prosody: bool = False,
    context_blocks: int = 0,
    context_kernel: int = 9,
) -> AdapterSet:
    """A set whose every parameter is random (not the near-identity initialisation, so the context
    blocks of an ASR head mix frames from the start), so tests see each component's effect; labels
    default to the task's example classes. One seed gives one set, whatever the global RNG's state."""
    spec = get_task(task)
    fields = spec.example_fields()
    if labels is not None:
        fields["labels"] = labels
    config = config_for_method(
        method, task, backbone.identity.to_dict(), **fields,
        num_prompt_frames=num_prompt_frames, prompt_position=prompt_position,
    )
    config.head.hidden_dim = 16
    config.head.embedding_dim = 16
    config.head.prosody = prosody and spec.supports_prosody
    config.head.prosody_dim = 8
    config.head.context_blocks, config.head.context_kernel = context_blocks, context_kernel
    if config.e_adapter is not None:
        config.e_adapter.bottleneck = 8
    if config.l_adapter is not None:
        config.l_adapter.dim = 16
    with torch.random.fork_rng(devices=[]):  # the initialisation too: same seed, same set, on any device
        torch.manual_seed(seed)
        adapter_set = AdapterSet.create(config, backbone)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in adapter_set.parameters():
            noise = torch.randn(parameter.shape, generator=generator) * scale
            parameter.add_(noise.to(parameter.device, parameter.dtype))
    return adapter_set.eval()


def spelled_log_probs(text: str, vocab: list[str] = CTC_VOCAB, noise: dict[int, str] | None = None) -> torch.Tensor:
    """CTC log-probabilities whose best path spells ``text`` (one frame per character, a blank frame
    after each); at the character positions in ``noise`` the given wrong letter is slightly likelier."""
    frames = []
    for position, char in enumerate(text):
        row = torch.full((len(vocab),), -8.0)
        row[vocab.index(char)] = -0.4
        if noise and position in noise:
            row[vocab.index(noise[position])] = -0.3
        frames += [row, torch.full((len(vocab),), -8.0).index_fill(0, torch.tensor([0]), -0.01)]
    return torch.log_softmax(torch.stack(frames), dim=-1)


def seeded_waveform(seconds: float, seed: int = 0, sample_rate: int = 16000) -> torch.Tensor:
    """A deterministic speech-like test signal: a few harmonics with vibrato plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = rng.uniform(90, 220) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 6) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    wave = 0.3 * wave / np.max(np.abs(wave)) + 0.01 * rng.standard_normal(t.shape)
    return torch.from_numpy(wave.astype(np.float32))


def outputs_per_row(model, waves: list[torch.Tensor], keys: list[str]) -> list[torch.Tensor]:
    """Run ``waves`` as one batch routed by ``keys`` and return each row's head output in row order
    (a CTC row cut to its own frames), so a mixed batch can be compared with each row run alone."""
    batch, lengths = pad_waveforms(waves)
    device = model.backbone.device
    with torch.no_grad():
        groups = model(batch.to(device), lengths.to(device), keys)
    per_row = {}
    for group in groups.values():
        for position, row in enumerate(group.rows):
            out = group.output[position]
            if out.dim() == 2:  # CTC: only the valid frames
                out = out[: int(group.lengths[position])]
            per_row[row] = out
    return [per_row[i] for i in range(len(waves))]


def answers_alone(model, clips: list[torch.Tensor], keys: list[str]) -> list:
    """Each clip's served answer (``predict``) with no batch-mates, in row order: what a mixed batch must equal."""
    return [model.predict([clip], [key])[0] for clip, key in zip(clips, keys, strict=True)]


def voice_rows_alone_and_in_a_batch(branch: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A voice branch's embeddings of a short and a long clip padded into one batch, and of the short one alone
    (a row's answer must not depend on its batch-mates or the padding)."""
    short, long = seeded_waveform(0.4, seed=2), seeded_waveform(3.1, seed=3)
    padded = torch.zeros(2, long.numel())
    padded[0, : short.numel()], padded[1] = short, long
    with torch.no_grad():
        together = branch(padded, torch.tensor([short.numel(), long.numel()]))
        alone = branch(short.unsqueeze(0), torch.tensor([short.numel()]))
    return together, alone


def voice_set_round_trip(backbone: Backbone, branch: torch.nn.Module, voice_weight: float,
                         folder: Path) -> tuple[float, float, dict]:
    """A random speaker set carrying ``branch`` as its voice branch at ``voice_weight``, saved to ``folder`` and
    loaded back: the served cosine of two clips, the cosine the config promises (``(1 - v) cos_encoder +
    v cos_branch``, the encoder part read from the same set without the branch) and the saved head config."""
    import json

    from elp.heads.voice import head_fields
    from elp.model import MultiAdapterModel

    plain = make_random_adapter_set(backbone, "verification", seed=4)
    config = plain.config
    config.head.voice_weight = voice_weight
    for field, value in head_fields(branch.config.to_dict()).items():
        setattr(config.head, field, value)
    fused = AdapterSet(config)
    fused.load_state_dict(plain.state_dict() | {f"head.voice.{k}": v for k, v in branch.state_dict().items()})
    fused.save(folder)
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("fused", AdapterSet.load(folder))
    model.add_adapter_set("plain", make_random_adapter_set(backbone, "verification", seed=4))
    a, b = seeded_waveform(1.9, seed=10), seeded_waveform(1.1, seed=11)
    outputs = model.predict([a, b, a, b], ["plain", "fused", "fused", "plain"])
    with torch.no_grad():
        voice_a, voice_b = (branch(x.unsqueeze(0), torch.tensor([x.numel()]))[0] for x in (a, b))
    expected = (1 - voice_weight) * float(outputs[0].embedding @ outputs[3].embedding) \
        + voice_weight * float(voice_a @ voice_b)
    head = json.loads((folder / "adapter_config.json").read_text())["head"]
    return float(outputs[2].embedding @ outputs[1].embedding), expected, head


def tiny_rescorer(checkpoint_dir: str | Path):
    """A second-pass rescorer (``elp.decoding.rescoring``) on a tiny Whisper checkpoint's own decoder. Such a
    checkpoint ships no BPE tokenizer (what ``checkpoint_rescorer`` reads), so words get made-up token ids:
    one a word, 5-49."""
    from transformers import WhisperForConditionalGeneration

    from elp.backbones import load_backbone
    from elp.convert.whisper_decoder_set import build_decoder_set
    from elp.decoding.rescoring import DecoderRescorer
    from elp.heads.config import DecoderConfig

    whisper = WhisperForConditionalGeneration.from_pretrained(checkpoint_dir).eval()
    config = DecoderConfig(layers=1, heads=2, ffn_dim=64, vocab_size=64, max_target_positions=32,
                           source_positions=1500, prompt_ids=[1, 60, 61, 62], eot_id=50, suppress_ids=[3],
                           begin_suppress_ids=[4, 50], max_tokens_per_second=6.0, extra_tokens=10,
                           trailing_silence_s=0.3)
    head = build_decoder_set(whisper.model.decoder, load_backbone(str(checkpoint_dir)),
                             [f"t{i}" for i in range(50)], config).head
    return DecoderRescorer(head, lambda text: [5 + sum(map(ord, word)) % 45 for word in text.split()])
