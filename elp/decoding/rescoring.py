"""A second pass over a CTC set's beam: the checkpoint's own pretrained decoder rescoring its n-best.

Why: on real people the CTC set's word errors are whole-word substitutions by other real words ("and" for "then",
"tree" for "treat"): the acoustics and the word LM's choices, not spelling. Whisper's decoder was trained on
680,000 hours of real speech and reads the whole clip; asked only to *score* the beam's few best transcripts
(teacher-forced, one batched pass, no autoregressive decoding) it picks among them at a fraction of its own
decoding cost. It reads the set's own last encoder layer (the E-adapters' output), so no second encoder pass.

The decoder's weights and BPE tokenizer are not stored in the set: they come from the checkpoint folder the
backbone was loaded from (``Backbone.source``), built once per folder and precision and shared
(:func:`checkpoint_rescorer`). On CPUs that multiply bfloat16 natively the decoder runs in bfloat16
(:func:`native_dtype`): on the served n-best 89 -> 48 ms a clip, its sequence scores within a few tenths of a nat
of float32's and validation WER unchanged (the asr-default card); elsewhere float32, with the vocabulary projection's
log-softmax normalisers read mostly from int8 (``Int8Shortlist.near_exact_logits``: the transcripts' own tokens and
every token near the top in float32), a third of the pass, at scores within hundredths of a nat of the full float32
projection's (``"float32-exact"``, kept for tools to compare against).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import torch

from elp.decoding.beam import Hypothesis
from elp.decoding.config import RescoringConfig
from elp.errors import RescorerUnavailableError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from elp.heads.seq2seq import WhisperDecoderHead
    from elp.heads.shortlist import Int8Shortlist


class DecoderRescorer:
    """``best(frames, hypotheses)``: the hypothesis with the highest ``score + weight * log p_decoder + token_bonus *
    tokens``, the decoder teacher-forced on each hypothesis' tokens and its end of text over ``frames`` (the set's
    last encoder layer, (T, d))."""

    def __init__(self, head: WhisperDecoderHead, encode: Callable[[str], list[int]],
                 projection: Int8Shortlist | None = None) -> None:
        self.head = head.eval()
        self.encode = encode
        self.prompt = list(head.config.prompt_ids)
        self.eot = head.config.eot_id
        #: the vocabulary projection's int8 copy (normalisers from int8, the rest exact); None: all float
        self.projection = projection

    def token_ids(self, text: str) -> list[int]:
        """A transcript's tokens after the prompt: its BPE tokens (a leading space, as Whisper writes) and the end."""
        return [*(self.encode(" " + text) if text else []), self.eot]

    def log_probs(self, frames: torch.Tensor, texts: Sequence[str]) -> list[float]:
        """log p_decoder(tokens, end of text | frames) of each text (:meth:`target_log_probs` of its ``token_ids``)."""
        return self.target_log_probs(frames, [self.token_ids(text) for text in texts])

    @torch.inference_mode()
    def target_log_probs(self, frames: torch.Tensor, targets: Sequence[Sequence[int]]) -> list[float]:
        """log p_decoder(target | frames) of each token sequence after the prompt, teacher-forced in one pass. The
        n-best of a beam share most of their tokens, so the pass reads their prefix tree: each distinct prefix is
        one position that sees only its ancestors (``tree_positions``), and only the positions that predict some
        target's token reach the vocabulary projection (51,865 outputs a position: most of the cost)."""
        head = self.head
        device = head.silence.device
        sequences = [(*self.prompt, *target) for target in targets]
        node_of: dict[tuple[int, ...], int] = {}
        tokens: list[int] = []
        parents: list[int] = []
        for sequence in sequences:  # every prefix but the whole sequence (its last token predicts nothing)
            for end in range(1, len(sequence)):
                if sequence[:end] not in node_of:
                    node_of[sequence[:end]] = len(tokens)
                    tokens.append(sequence[end - 1])
                    parents.append(node_of.get(sequence[:end - 1], -1))
        positions, mask = tree_positions(parents)
        features = frames.to(device, head.silence.dtype).unsqueeze(0)
        cross = head._cross_states(features, torch.tensor([frames.shape[0]]))
        hidden = head._step(torch.tensor([tokens], device=device), 0, [[] for _ in head.decoder.layers], cross,
                            keep=len(tokens), tree=(positions.to(device), mask.to(device)))[0]
        # each scored token and the node that predicts it: the prefix before it
        predictors = [[node_of[sequence[:end]] for end in range(len(self.prompt), len(sequence))]
                      for sequence in sequences]
        rows = sorted({node for nodes in predictors for node in nodes})
        row_of = {node: row for row, node in enumerate(rows)}
        selected, weight = hidden[torch.tensor(rows, device=device)], head.decoder.embed_tokens.weight
        if self.projection is None:
            logits = (selected @ weight.t()).float()
        else:  # every target token among the exact ones: only the normalisers read int8 values
            targets_seen = torch.tensor(sorted({token for target in targets for token in target}))
            logits = self.projection.near_exact_logits(selected, weight, NORMALISER_MARGIN, targets_seen)
        normalisers = torch.logsumexp(logits, dim=-1)  # log_softmax's, without writing every token's value
        scores = []
        for nodes, sequence in zip(predictors, sequences, strict=True):
            at = [row_of[node] for node in nodes]
            scores.append(float((logits[at, list(sequence[len(self.prompt):])] - normalisers[at]).sum()))
        return scores

    def best(self, frames: torch.Tensor, hypotheses: Sequence[Hypothesis], config: RescoringConfig) -> Hypothesis:
        """The rescored best of the first ``config.nbest`` ``hypotheses`` (best first from the search)."""
        limit = self.head.config.max_target_positions - len(self.prompt)
        tokenized = [(h, self.token_ids(h.text)) for h in hypotheses[: config.nbest]]
        kept = [(h, target) for h, target in tokenized if len(target) <= limit]
        if len(kept) < 2:  # nothing to choose, or transcripts longer than the decoder reads: the search's answer
            return hypotheses[0]
        targets = [target for _, target in kept]
        scores = self.target_log_probs(frames, targets)
        return kept[rescored_index([h for h, _ in kept], scores, [len(t) for t in targets], config)][0]


def tree_positions(parents: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A prefix tree given as each node's parent (-1 for a root; parents listed before their children): each node's
    depth (its position in its sequence) and the attention mask (node, node) of itself and its ancestors."""
    count = len(parents)
    depth = [0] * count
    mask = torch.zeros(count, count, dtype=torch.bool)
    for node, parent in enumerate(parents):
        if parent >= 0:
            depth[node] = depth[parent] + 1
            mask[node] = mask[parent]
        mask[node, node] = True
    return torch.tensor(depth, dtype=torch.long), mask


def rescored_index(hypotheses: Sequence[Hypothesis], decoder_log_probs: Sequence[float], token_counts: Sequence[int],
                   config: RescoringConfig) -> int:
    """Which of the first ``config.nbest`` hypotheses wins: the highest ``score + weight * decoder log-probability +
    token_bonus * tokens``, the earliest of equals (the search's order). Serving and the tuning tool
    (``training.rescoring``) both choose here."""
    kept = range(min(config.nbest, len(hypotheses)))
    totals = [hypotheses[i].score + config.weight * decoder_log_probs[i] + config.token_bonus * token_counts[i]
              for i in kept]
    return max(kept, key=totals.__getitem__)


#: the passes a rescorer's decoder runs (``checkpoint_rescorer``): its precision, and whether its vocabulary
#: projection's normalisers come from int8. ``"float32-exact"``: the whole projection in float32, what the served
#: float32 pass is checked against (tools only: ``--rescoring-dtype``)
DTYPES = {"float32": (torch.float32, True), "float32-exact": (torch.float32, False),
          "bfloat16": (torch.bfloat16, False)}
#: tokens within this many nats of a position's best int8 logit are computed in float32 (speed only: a wider margin
#: computes more of them exactly; ``Int8Shortlist.near_exact_logits``)
NORMALISER_MARGIN = 8.0


def precision_of(dtype: str) -> str:
    """The decoder's precision in a pass of ``DTYPES`` (what a set's ``rescoring.by_precision`` is keyed by)."""
    return dtype.removesuffix("-exact")


def native_dtype() -> str:
    """The decoder's precision on this machine: ``bfloat16`` where the CPU multiplies it natively (AVX512-BF16,
    AMX), else ``float32`` (emulated bfloat16 is slower than float32)."""
    from elp.backbones.quantize import cpu_has_native_bf16

    return "bfloat16" if cpu_has_native_bf16() else "float32"


#: (CPU class, encoder precision) where the float32 pass, its normalisers from int8, was measured to cost at most
#: 1.6x a clip with the set's setting for that encoder (the asr-default card; ``RescoringConfig.at_precision``)
FLOAT32_PASS_FITS = {("avx2", "float32"), ("avx2", "int8"), ("avx512", "float32"), ("avx512-vnni", "int8")}


def float32_pass_fits(encoder_precision: str | None) -> bool:
    """Whether a float32 pass beside an encoder in ``encoder_precision`` fits the cost of a default on this CPU
    (``FLOAT32_PASS_FITS``, ``elp.backbones.quantize.cpu_kernel_class``): beside the encoder ``ELP_DTYPE=auto`` picks
    on x86 CPUs with AVX2 and without native bfloat16 (float32 without VNNI, int8 with it: AVX-512 VNNI, or AVX-VNNI
    on client CPUs without AVX-512); not on ARM (not measured)."""
    from elp.backbones.quantize import cpu_kernel_class

    return (cpu_kernel_class(), encoder_precision) in FLOAT32_PASS_FITS


@functools.lru_cache(maxsize=4)
def checkpoint_rescorer(source: str, dtype: str = "float32") -> DecoderRescorer:
    """The rescorer of a Whisper checkpoint folder: its decoder (in ``dtype``, see ``DTYPES``) and its BPE
    tokenizer, built once per folder and precision and shared by every set and thread that rescores. Only the
    decoder's tensors are read from the checkpoint's safetensors, not the whole model (a process serving
    asr-default grew by ~430 MB resident in float32, ~0.7 GB at its peak while this ran); the encoder's output on
    silence comes from a float32 encoder loaded for that one pass and dropped."""
    if dtype not in DTYPES:
        raise ValueError(f"rescoring dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    from safetensors import safe_open
    from transformers import AutoTokenizer, GenerationConfig, WhisperConfig

    from elp.backbones import load_backbone
    from elp.convert.whisper_decoder_set import assemble, decoder_fields, tokenizer_tokens
    from elp.heads.config import DecoderConfig

    weights = Path(source) / "model.safetensors"
    try:
        config = WhisperConfig.from_pretrained(source)
        generation = GenerationConfig.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
        with safe_open(str(weights), framework="pt") as checkpoint:
            state = {key.removeprefix("model.decoder."): checkpoint.get_tensor(key).float()
                     for key in checkpoint.keys() if key.startswith("model.decoder.")}  # noqa: SIM118
    except (OSError, ValueError) as exc:
        raise RescorerUnavailableError(f"rescoring needs the backbone checkpoint's decoder and tokenizer ({source}): "
                                       f"{exc}") from exc
    checkpoint_parts = SimpleNamespace(config=config, generation_config=generation)  # what decoder_fields reads
    decoder = DecoderConfig(**decoder_fields(checkpoint_parts, tokenizer, "en", "transcribe"))
    decoder_set = assemble("asr", load_backbone(source), decoder, state, "rescoring decoder")
    decoder_set.head.set_tokens(tokenizer_tokens(tokenizer))
    del state
    precision, int8_normalisers = DTYPES[dtype]
    head = decoder_set.head.to(precision).eval()  # before its silence keys are first computed (lazily)
    return DecoderRescorer(head, functools.partial(tokenizer.encode, add_special_tokens=False),
                           int8_projection(head) if int8_normalisers else None)


def int8_projection(head: WhisperDecoderHead) -> Int8Shortlist | None:
    """The int8 copy of a float32 decoder's vocabulary projection, the one its greedy shortlist uses (~34 MB); None
    where this torch build has no int8 kernels (the whole projection in float32 then)."""
    from elp.backbones.quantize import cpu_has_vnni, int8_kernels_work

    if (problem := int8_kernels_work()) is not None:
        log.info("ASR second pass: float32 vocabulary projection (no int8 kernels: %s)", problem)
        return None
    return head.int8_shortlist(cpu_has_vnni())  # the head itself, only ever teacher-forced here, keeps none
