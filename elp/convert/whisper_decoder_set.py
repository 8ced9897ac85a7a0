"""Write an ASR adapter set that serves a Whisper checkpoint's own decoder on the shared encoder.

Why: the project's CTC sets learnt from synthetic voices; Whisper's decoder learnt from real speech
and reads exactly the encoder the server already keeps resident. The set holds the decoder, the
encoder's output on 30 s of silence and the token strings; it is *converted*, never trained.

    python -m elp.convert.whisper_decoder_set models/whisper-base adapters_store/asr-whisper [--language en] \
        [--draft adapters_store/asr-whisper/draft]
    python -m elp.convert.whisper_decoder_set models/whisper-base adapters_store/language-whisper \
        --labels de en es fr it ru           # language identification: the decoder scores <|de|>, <|en|>, ...
    python -m elp.convert.whisper_decoder_set models/whisper-base adapters_store/translate-whisper --translate
                                             # translation: each clip's language detected, then <|translate|>

A label set keeps only the vocabulary rows it reads (end of text, start of transcript, one token per
label): ~100 MB instead of ~200 MB.

The weights (~200 MB in float32) are made on each machine by ``scripts/setup_default_backbone.sh``,
not committed; the set's model card is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from elp.adapter_set import AdapterSet
from elp.backbones import load_backbone
from elp.backbones.base import Backbone
from elp.config import AdapterSetConfig
from elp.heads.config import CompanionConfig, DecoderConfig
from elp.heads.seq2seq import WhisperDecoderHead
from elp.model import MultiAdapterModel

SPECIAL_PROMPT = ("<|startoftranscript|>", "<|{language}|>", "<|{whisper_task}|>", "<|notimestamps|>")
DESCRIPTION = ("Speech recognition by the Whisper checkpoint's own pretrained decoder (greedy) on the shared "
               "encoder pass: converted from the backbone checkpoint, not trained (elp.convert.whisper_decoder_set).")


TRANSLATION_DESCRIPTION = ("Speech translation into English by the Whisper checkpoint's own pretrained decoder "
                           "(greedy) on the shared encoder pass, each clip's language detected first from its language "
                           "tokens: converted from the backbone checkpoint, not trained "
                           "(elp.convert.whisper_decoder_set --translate).")
LABEL_DESCRIPTION = ("The Whisper checkpoint's own decoder scoring one token per label after <|startoftranscript|> "
                     "(its language identification) on the shared encoder pass: converted, not trained "
                     "(elp.convert.whisper_decoder_set --labels).")


@torch.inference_mode()
def silence_frames(backbone: Backbone, adapter_set: AdapterSet) -> torch.Tensor:
    """The encoder's last-layer output on a whole window of zeros (Whisper's 30 s), (positions, hidden),
    by the served encoder pass itself (``MultiAdapterModel.encode`` for the set's rows)."""
    samples = backbone.max_samples
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("decoder", adapter_set, encode_only=True)  # no shortlist: its head does not run here
    encoded = model.encode(torch.zeros(1, samples), torch.tensor([samples]), ["decoder"])
    return encoded.hidden_states[-1][0, : int(encoded.lengths[0])].float().cpu()


def decoder_sizes(config) -> dict:
    """The ``DecoderConfig`` sizes of a ``WhisperConfig`` (the checkpoint's, or its decoder's own)."""
    return {"layers": config.decoder_layers, "heads": config.decoder_attention_heads,
            "ffn_dim": config.decoder_ffn_dim, "max_target_positions": config.max_target_positions,
            "source_positions": config.max_source_positions}


def assemble(task: str, backbone: Backbone, decoder: DecoderConfig, state: dict[str, torch.Tensor],
             description: str, labels: list[str] | None = None) -> AdapterSet:
    """A decoder set of ``task`` for ``backbone``: the decoder's weights ``state`` and the encoder's
    output on silence; the encoder is read unchanged (method ``none``, its last layer)."""
    config = AdapterSetConfig(task=task, backbone=backbone.identity.to_dict(), method="none",
                              weighted_sum_layers=[backbone.num_layers], decoder=decoder, labels=labels,
                              description=description)
    adapter_set = AdapterSet(config, initialise=False)  # the decoder's values are all in ``state``
    head = adapter_set.head
    assert isinstance(head, WhisperDecoderHead)
    head.decoder.load_state_dict(state, assign=True)  # the given tensors themselves: no second copy
    head.silence.copy_(silence_frames(backbone, adapter_set))
    return adapter_set


def build_decoder_set(whisper_decoder: nn.Module, backbone: Backbone, tokens: list[str], decoder: DecoderConfig,
                      description: str = DESCRIPTION, task: str = "asr") -> AdapterSet:
    """The set of ``task`` (ASR, or translation for a decoder that detects its rows' language): ``whisper_decoder``
    (a ``WhisperDecoder``'s weights), ``tokens`` (ids below ``eot_id``)."""
    if len(tokens) != decoder.eot_id:
        raise ValueError(f"{len(tokens)} token strings for eot id {decoder.eot_id}")
    adapter_set = assemble(task, backbone, decoder, whisper_decoder.state_dict(), description)
    adapter_set.head.set_tokens(tokens)
    return adapter_set.eval()


def load_checkpoint(checkpoint: str | Path) -> tuple[nn.Module, object]:
    """The float32 ``WhisperForConditionalGeneration`` of a checkpoint folder and its tokenizer."""
    from transformers import AutoTokenizer, WhisperForConditionalGeneration

    whisper = WhisperForConditionalGeneration.from_pretrained(str(checkpoint), dtype=torch.float32)
    return whisper, AutoTokenizer.from_pretrained(str(checkpoint))


def convert(checkpoint: str | Path, language: str = "en", trailing_silence_s: float = 2.0,
            stop_repeats: int = 0) -> AdapterSet:
    """A decoder set from a Whisper checkpoint folder with its tokenizer and generation config."""
    whisper, tokenizer = load_checkpoint(checkpoint)
    decoder = DecoderConfig(**decoder_fields(whisper, tokenizer, language, "transcribe"),
                            trailing_silence_s=trailing_silence_s, language=language, stop_repeats=stop_repeats,
                            alignment_heads=[list(pair) for pair in
                                             getattr(whisper.generation_config, "alignment_heads", None) or []])
    return build_decoder_set(whisper.model.decoder, load_backbone(str(checkpoint)), tokenizer_tokens(tokenizer),
                             decoder)


def decoder_fields(whisper: nn.Module, tokenizer: object, language: str, whisper_task: str) -> dict:
    """The ``DecoderConfig`` fields every transcribing or translating set of the checkpoint shares: sizes, the prompt
    ``<|startoftranscript|><|language|><|whisper_task|><|notimestamps|>``, end of text, suppressed tokens."""
    generation = whisper.generation_config
    prompt = tokenizer.convert_tokens_to_ids([token.format(language=language, whisper_task=whisper_task)
                                              for token in SPECIAL_PROMPT])
    if tokenizer.unk_token_id in prompt:
        raise ValueError(f"the checkpoint's tokenizer has no token for language {language!r} or task {whisper_task!r}")
    return {**decoder_sizes(whisper.config), "vocab_size": whisper.config.vocab_size, "prompt_ids": list(prompt),
            "eot_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            "suppress_ids": list(generation.suppress_tokens or []),
            "begin_suppress_ids": list(generation.begin_suppress_tokens or [])}


def tokenizer_tokens(tokenizer: object) -> list[str]:
    """The token strings below end of text (byte-level BPE symbols)."""
    return tokenizer.convert_ids_to_tokens(list(range(tokenizer.convert_tokens_to_ids("<|endoftext|>"))))


def convert_translation(checkpoint: str | Path, trailing_silence_s: float = 2.0, stop_repeats: int = 0) -> AdapterSet:
    """A translation set: the decoder detects each clip's language among every language token of the checkpoint
    (its generation config's ``lang_to_id``, in token order) and writes English after ``<|translate|>``. Its answers
    keep the decoder's casing, punctuation and digits (a translation is read, not matched against ``/asr``), and it
    names no alignment heads: the words it writes are not the words spoken, so they have no times in the audio."""
    whisper, tokenizer = load_checkpoint(checkpoint)
    language_tokens = getattr(whisper.generation_config, "lang_to_id", None) or {}
    if not language_tokens:
        raise ValueError("the checkpoint's generation config names no language tokens (lang_to_id): not multilingual")
    ordered = sorted(language_tokens, key=language_tokens.__getitem__)
    decoder = DecoderConfig(**decoder_fields(whisper, tokenizer, "en", "translate"),
                            trailing_silence_s=trailing_silence_s, language="", stop_repeats=stop_repeats,
                            spoken_form=False, language_ids=[language_tokens[token] for token in ordered],
                            languages=[token.strip("<|>") for token in ordered])
    return build_decoder_set(whisper.model.decoder, load_backbone(str(checkpoint)), tokenizer_tokens(tokenizer),
                             decoder, TRANSLATION_DESCRIPTION, task="translation")


def convert_labels(checkpoint: str | Path, labels: list[str], trailing_silence_s: float = 2.0,
                   label_bias: list[float] | None = None, task: str = "language") -> AdapterSet:
    """A classifier set whose decoder scores ``<|label|>`` after ``<|startoftranscript|>`` (Whisper's own
    language identification), its vocabulary cut to the rows it reads: [end of text, start, labels...]."""
    whisper, tokenizer = load_checkpoint(checkpoint)
    kept = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|startoftranscript|>", *(f"<|{x}|>" for x in labels)])
    if tokenizer.unk_token_id in kept[1:]:  # Whisper's unknown token is <|endoftext|> itself
        raise ValueError(f"the checkpoint's tokenizer lacks a token for one of {labels}")
    return build_label_set(whisper.model.decoder, load_backbone(str(checkpoint)), kept, labels, trailing_silence_s,
                           label_bias, task)


def build_label_set(whisper_decoder: nn.Module, backbone: Backbone, kept: list[int], labels: list[str],
                    trailing_silence_s: float = 2.0, label_bias: list[float] | None = None,
                    task: str = "language") -> AdapterSet:
    """The set from a ``WhisperDecoder``: ``kept`` = the checkpoint's ids of end of text, start of transcript
    and one token per label; only those rows of its vocabulary are kept, renumbered 0, 1, 2...."""
    decoder = DecoderConfig(
        **decoder_sizes(whisper_decoder.config), vocab_size=len(kept), prompt_ids=[1], eot_id=0,
        label_ids=list(range(2, len(kept))), label_bias=list(label_bias or []), trailing_silence_s=trailing_silence_s,
        language="", float32_encoder=False)  # language ID holds on the int8 encoder (language-whisper card)
    state = whisper_decoder.state_dict()
    state["embed_tokens.weight"] = state["embed_tokens.weight"][kept].clone()
    return assemble(task, backbone, decoder, state, LABEL_DESCRIPTION, labels=list(labels)).eval()


def with_draft(adapter_set: AdapterSet, folder: Path, max_tokens: int | None = None,
               max_rows: int | None = None) -> AdapterSet:
    """``adapter_set`` with the CTC draft in ``folder`` (``draft_config.json`` + ``draft_model.safetensors``,
    written by ``training.draft_ctc``): the same decoder, fewer passes (``elp.heads.speculative``)."""
    spec = json.loads((folder / "draft_config.json").read_text())
    decoder = adapter_set.config.decoder
    if decoder is None:
        raise ValueError("a draft needs a decoder set")
    decoder = dataclasses.replace(
        decoder, draft_hidden=int(spec["hidden"]), draft_kernel=int(spec["kernel"]), draft_vocab=list(spec["vocab"]),
        draft_max_tokens=max_tokens or decoder.draft_max_tokens, draft_max_rows=max_rows or decoder.draft_max_rows)
    drafted = AdapterSet(dataclasses.replace(adapter_set.config, decoder=decoder))
    state = {k: v for k, v in adapter_set.state_dict().items() if ".draft." not in k}
    missing, unexpected = drafted.load_state_dict(state, strict=False)
    if unexpected or any(".draft." not in name for name in missing):
        raise ValueError(f"the set's weights do not fit: missing {missing}, unexpected {unexpected}")
    drafted.head.draft.load_state_dict(load_file(folder / "draft_model.safetensors"))
    return drafted.eval()


def with_companion(adapter_set: AdapterSet, folder: Path, weight: float) -> AdapterSet:
    """A label set with the pooled classifier of the set in ``folder`` beside its decoder
    (``elp.heads.companion``): same task and labels, and a plain weighted layer sum, so that it reads the
    shared encoder pass as it did alone (no E-, L- or P-adapters of its own). That ``adapter_set`` is a decoder
    label set is the config's own check (``TaskSpec.validate``, when the joined config is built)."""
    companion_set = AdapterSet.load(folder)
    source, config = companion_set.config, adapter_set.config
    if source.task != config.task or source.labels != config.labels:
        raise ValueError(f"{folder} answers {source.task} over {source.labels}, not {config.task} over {config.labels}")
    if source.decoder is not None or any(x is not None for x in (source.e_adapter, source.l_adapter, source.p_adapter)):
        raise ValueError(f"{folder} must be a plain weighted-sum classifier (method 'none', no decoder)")
    if source.backbone.get("fingerprint") != config.backbone.get("fingerprint"):
        raise ValueError(f"{folder} was trained on another backbone")
    companion = CompanionConfig(head=source.head, weighted_sum_layers=list(source.weighted_sum_layers or []),
                                weight=weight, source=f"{folder.name}@{(source.weights_sha256 or '')[:12]}")
    joined = AdapterSet(dataclasses.replace(config, companion=companion))
    state = adapter_set.state_dict() | {f"companion.{k}": v for k, v in companion_set.state_dict().items()
                                        if k.startswith(("featurizer.", "head."))}
    joined.load_state_dict(state, strict=True)
    return joined.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a transformers Whisper checkpoint folder (with tokenizer)")
    parser.add_argument("out", type=Path, help="the set's folder, e.g. adapters_store/asr-whisper")
    parser.add_argument("--language", default="en", help="the language token forced into the prompt")
    parser.add_argument("--trailing-silence", type=float, default=2.0, help="seconds of zeros after each clip")
    parser.add_argument("--stop-repeats", type=int, default=0, help="end a row repeating one span this often (0: off)")
    parser.add_argument("--draft", type=Path, help="a CTC draft folder (training.draft_ctc) for drafted decoding")
    parser.add_argument("--labels", nargs="+", help="a language set instead: the decoder scores <|LABEL|> tokens")
    parser.add_argument("--translate", action="store_true", help="a translation set instead: each clip's language "
                        "detected from the language tokens, then English written after <|translate|>")
    parser.add_argument("--label-bias", type=float, nargs="+", default=[],
                        help="one prior per label added to its logit (fitted by training.label_bias)")
    parser.add_argument("--companion", type=Path, help="with --labels: a trained classifier set of the same labels "
                        "whose pooled head answers beside the decoder (elp.heads.companion)")
    parser.add_argument("--companion-weight", type=float, default=1.0,
                        help="its log-probabilities' weight (chosen by training.companion_weight)")
    args = parser.parse_args(argv)
    if args.labels and args.draft is not None:
        parser.error("a label set scores one step: it has no use for a draft")
    if args.companion is not None and not args.labels:
        parser.error("--companion needs --labels")
    if args.translate and (args.labels or args.draft is not None or args.language != "en"):
        parser.error("--translate detects the language and drafts nothing: no --labels, --draft or --language")
    if args.labels:
        adapter_set = convert_labels(args.checkpoint, args.labels, args.trailing_silence, args.label_bias)
    elif args.translate:
        adapter_set = convert_translation(args.checkpoint, args.trailing_silence, args.stop_repeats)
    else:
        adapter_set = convert(args.checkpoint, args.language, args.trailing_silence, args.stop_repeats)
    if args.draft is not None:
        adapter_set = with_draft(adapter_set, args.draft)
    if args.companion is not None:
        adapter_set = with_companion(adapter_set, args.companion, args.companion_weight)
    adapter_set.save(args.out)
    print(f"wrote {args.out} ({adapter_set.size_bytes / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
