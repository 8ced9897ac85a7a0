"""Whisper's own decoder as an ASR head on the shared, length-sliced encoder pass.

The Whisper decoder was trained on 30 s windows: speech, then the encoder's output on padding. The
server encodes only the clip (plus ``trailing_silence_s``), so each row's frames are followed by the
stored encoder output on silence for the positions past the clip: the decoder sees the window it
knows while the encoder pays for the clip alone. The silence frames' cross-attention keys and values
are the same for every request and are computed once.

Decoding is greedy, batched over the set's rows of a batch (each step reads the weights once for all
rows), with a key/value cache; it equals ``transformers``' own step-by-step forward (tests). A set with
a CTC draft decodes calls of few rows by checking drafted tokens in one pass (``elp.heads.speculative``):
the same tokens in fewer passes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from elp.heads.config import DecoderConfig
from elp.heads.draft import CtcDraft, DraftProposer, WordTokenizer, greedy_words
from elp.heads.whisper_text import WhisperTranscriber, detokenize, token_bytes  # noqa: F401  (re-exported)
from elp.string_table import join_strings, split_strings

if TYPE_CHECKING:
    from elp.heads.shortlist import Int8Shortlist

FRAMES_PER_SECOND = 50  # Whisper encoder frames: 2 x 10 ms hops
MAX_LOOP_SPAN = 8  # longest token span ``stop_repeats`` looks for
#: input channels of the vocabulary projection kept in float32 by the int8 shortlist (speed only:
#: 32 gave Whisper base a median of 19 candidates a token against 2,282 with none, 10 corpus training clips)
EXACT_CHANNELS = 32


def _whisper_decoder(config: DecoderConfig, d_model: int, initialise: bool = True) -> nn.Module:
    """transformers' decoder; ``initialise=False`` leaves its weights uninitialised for a caller that loads them
    all (it has no buffers: every value is a parameter of the saved set)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperDecoder

    if not initialise:
        with torch.device("meta"):
            decoder = _whisper_decoder(config, d_model)
        if next(decoder.buffers(), None) is None:  # a buffer would not be among the loaded weights
            return decoder.to_empty(device="cpu")
    return WhisperDecoder(WhisperConfig(
        d_model=d_model, decoder_layers=config.layers, decoder_attention_heads=config.heads,
        decoder_ffn_dim=config.ffn_dim, vocab_size=config.vocab_size,
        max_target_positions=config.max_target_positions, max_source_positions=config.source_positions,
        encoder_layers=1, encoder_attention_heads=config.heads, pad_token_id=config.eot_id,
        bos_token_id=config.eot_id, eos_token_id=config.eot_id, decoder_start_token_id=config.prompt_ids[0],
    ))


class WhisperDecoderHead(nn.Module):
    """Frames (b, T, d) of the encoder's last layer -> token ids (b, N) as floats, -1 after a row ends (a set that
    detects each row's language: the language tokens' probabilities first, (b, L + N)).

    Parameters: the checkpoint's decoder (``decoder.*``), the encoder's output on 30 s of silence
    (``silence``) and the token strings below ``eot_id`` (``token_table``, byte-level BPE symbols)."""

    uses_prosody = False
    reads_clip_frames = True  # the model passes each row's frames before the trailing zeros (word times)

    def __init__(self, config: DecoderConfig, d_model: int, initialise: bool = True) -> None:
        super().__init__()
        self.config = config
        self.decoder = _whisper_decoder(config, d_model, initialise)
        self.register_buffer("silence", torch.zeros(config.source_positions, d_model))
        self.register_buffer("token_table", torch.zeros(config.token_table_bytes, dtype=torch.uint8))
        self.heads = config.heads
        self._silence_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        #: the vocabulary projection in int8 (``quantize_int8``); None: the tied float embedding
        self.logit_projection: nn.Module | None = None
        self.int8_parts: tuple[str, ...] = ()
        #: int8 shortlist + float32 rescoring of the vocabulary projection (``use_int8_shortlist``):
        #: serving state derived from the weights, kept out of the module tree and so of the saved set
        self.__dict__["shortlist"] = None
        #: a CTC draft over characters (``elp.heads.draft``): tokens to check in one pass, speed only
        self.draft = (CtcDraft(d_model, config.draft_hidden, config.draft_kernel, len(config.draft_vocab))
                      if config.draft_hidden else None)
        #: decoder passes of each row of the last drafted call, empty after a greedy one (benchmarks read it)
        self.__dict__["last_passes"] = []
        #: rows also carry each token's times and probability (``time_words``; serving state, not saved)
        self.__dict__["word_times"] = False

    def time_words(self, enabled: bool = True) -> bool:
        """Answer each token's frames and probability beside the ids (``elp.heads.word_timing``), when the set
        names alignment heads and transcribes. Returns whether rows are now timed."""
        self.__dict__["word_times"] = bool(enabled and self.config.alignment_heads and not self.config.label_ids)
        return self.word_times

    @property
    def reads_waveform(self) -> bool:
        """Timed rows read their samples: the words' edges are put where they sound."""
        return self.word_times

    @functools.cached_property
    def opens_word(self) -> list[bool]:
        """Per token id below ``eot_id``: whether its text starts with a space (it opens a word)."""
        tokens = self.tokens()
        return [token_bytes(i, tokens).startswith(b" ") for i in range(len(tokens))]

    # -------------------------------------------------------------------- int8 token steps
    #: the Linears every token step reads; the cross-attention keys/values (once a request) stay float
    STEP_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                    "encoder_attn.q_proj", "encoder_attn.out_proj", "fc1", "fc2")

    def use_int8_shortlist(self, full_range: bool) -> None:
        """Pick each greedy token from an int8 shortlist rescored in float32 (``elp.heads.shortlist``):
        the same tokens as the float32 projection, reading mostly int8 weights (CPU only). Idempotent."""
        if self.shortlist is None and self.logit_projection is None:
            self.__dict__["shortlist"] = self.int8_shortlist(full_range)

    def int8_shortlist(self, full_range: bool) -> Int8Shortlist:
        """The vocabulary projection's int8 copy (``elp.heads.shortlist``), built on first use and kept with the
        decoder: heads that share it (``elp.shared_decoders``) build it once (1-2 s, ~34 MB), and a second pass'
        rescorer reads its normalisers from it (``elp.decoding.rescoring``)."""
        from elp.heads.shortlist import Int8Shortlist

        built = self.decoder.__dict__.get("int8_shortlist")
        if built is None or built.full_range != full_range:
            norm = self.decoder.layer_norm  # its output feeds the projection: 4 sd of a normalised value
            likely_peak = 4 * norm.weight.detach().abs() + norm.bias.detach().abs()
            outlying = likely_peak.topk(min(EXACT_CHANNELS, likely_peak.numel())).indices
            built = Int8Shortlist(self.decoder.embed_tokens.weight, full_range, outlying)
            self.decoder.__dict__["int8_shortlist"] = built
        return built

    def use_float_projection(self) -> None:
        """Drop the shortlist: every token from the full float32 projection (benchmarks compare them)."""
        self.__dict__["shortlist"] = None

    #: what ``quantize_int8`` can put in int8: the layers' step Linears, the vocabulary projection
    INT8_PARTS = ("layers", "logits")

    @property
    def quantized(self) -> bool:
        """Token steps in int8 (``quantize_int8``): their float weights are gone, so the set is not saved."""
        return self.int8_parts != ()

    def quantize_int8(self, full_range: bool, parts: tuple[str, ...] = INT8_PARTS,
                      input_maxima: dict[str, torch.Tensor] | None = None) -> None:
        """Run ``parts`` of the token steps in int8, in place (CPU only): the layers' Linears and/or
        the vocabulary projection.

        Why: at a few rows a step the decoder is bound by reading its weights (~200 MB in float32 for
        Whisper base, half of it the vocabulary projection); int8 reads a quarter of that. Each row is
        quantised alone (``RowwiseInt8Linear``), so a row's tokens do not depend on its batch-mates. The
        replaced float weights are dropped: such a head serves but is not saved (``AdapterSet.to_bytes``)."""
        from elp.backbones.quantize import RowwiseInt8Linear

        if self.int8_parts or not parts:
            return
        if unknown := set(parts) - set(self.INT8_PARTS):
            raise ValueError(f"unknown int8 parts {sorted(unknown)}; known: {self.INT8_PARTS}")
        maxima = input_maxima or {}
        if "layers" in parts:
            for index, layer in enumerate(self.decoder.layers):
                for name in self.STEP_LINEARS:
                    owner_name, _, child = name.rpartition(".")
                    owner = layer.get_submodule(owner_name) if owner_name else layer
                    setattr(owner, child, RowwiseInt8Linear.from_linear(getattr(owner, child), full_range,
                                                                        maxima.get(f"{index}.{name}")))
        if "logits" in parts:
            self.use_float_projection()  # the approximate int8 logits replace the exact shortlist
            self.logit_projection = RowwiseInt8Linear(self.decoder.embed_tokens.weight, None, full_range,
                                                      maxima.get("logits"))
        self.int8_parts = tuple(parts)

    # -------------------------------------------------------------------- token strings
    def set_tokens(self, tokens: list[str]) -> None:
        """Store the token strings (the config records their size: set it before saving)."""
        blob = join_strings(tokens)
        self.token_table = torch.frombuffer(bytearray(blob), dtype=torch.uint8).clone()
        self.config.token_table_bytes = len(blob)

    def tokens(self) -> list[str]:
        return split_strings(bytes(self.token_table.cpu().numpy()), self.config.eot_id)

    # -------------------------------------------------------------------- attention pieces
    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def _cross_kv(self, layer: nn.Module, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attention = layer.encoder_attn
        return self._split(attention.k_proj(frames)), self._split(attention.v_proj(frames))

    def _silence_keys(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Cross-attention keys/values of the silence frames, per layer (computed once)."""
        cached = self._silence_kv
        if cached is None or (cached[0][0].device, cached[0][0].dtype) != (self.silence.device, self.silence.dtype):
            silence = self.silence.unsqueeze(0)
            self._silence_kv = [self._cross_kv(layer, silence) for layer in self.decoder.layers]
        return self._silence_kv

    def _cross_states(self, features: torch.Tensor, lengths: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (b, heads, S, d_head) keys and values: each row's real frames, then silence."""
        total = self.config.source_positions
        frames = features[:, :total].to(self.silence.dtype)
        spans = [min(int(length), total) for length in lengths.tolist()]

        def spliced(real: torch.Tensor, silent: torch.Tensor) -> torch.Tensor:
            rows = [torch.cat([real[row:row + 1, :, :span], silent[:, :, span:]], dim=2)
                    for row, span in enumerate(spans)]
            return rows[0] if len(rows) == 1 else torch.cat(rows)  # one row: no second copy of the window

        states = []
        for layer, (silent_k, silent_v) in zip(self.decoder.layers, self._silence_keys(), strict=True):
            real_k, real_v = self._cross_kv(layer, frames)
            states.append((spliced(real_k, silent_k), spliced(real_v, silent_v)))
        return states

    def _step(self, tokens: torch.Tensor, start: int, cache: list[list[torch.Tensor]],
              cross: list[tuple[torch.Tensor, torch.Tensor]], keep: int = 1,
              watched: dict[int, list[int]] | None = None, seen: list[torch.Tensor] | None = None,
              tree: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The final-norm hidden states (b, keep, d) of the last ``keep`` positions after feeding
        ``tokens`` (b, n) at positions start..start+n: ``_logits`` / ``_next_tokens`` read them.
        ``watched``: heads per layer whose cross-attention probabilities (b, heads, n, S) go to ``seen``.
        ``tree``: (positions (n,), mask (n, n)) for tokens that form a prefix tree (``elp.decoding.rescoring``):
        each token at its own position, seeing only itself and its ancestors."""
        decoder = self.decoder
        count = tokens.shape[1]
        positions = decoder.embed_positions.weight[start:start + count] if tree is None else \
            decoder.embed_positions.weight[tree[0]]
        hidden = decoder.embed_tokens(tokens) + positions
        causal = count > 1 and start == 0 and tree is None
        # several tokens after cached ones (a drafted pass): each sees the cache and the tokens up to it
        mask = (torch.ones(count, start + count, dtype=torch.bool, device=tokens.device).tril(start)
                if count > 1 and start > 0 else None) if tree is None else tree[1]
        for index, layer in enumerate(decoder.layers):
            attention = layer.self_attn
            normed = layer.self_attn_layer_norm(hidden)
            query = self._split(attention.q_proj(normed))
            keys, values = self._split(attention.k_proj(normed)), self._split(attention.v_proj(normed))
            if cache[index]:
                keys, values = torch.cat([cache[index][0], keys], 2), torch.cat([cache[index][1], values], 2)
            cache[index] = [keys, values]
            mixed = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, is_causal=causal)
            hidden = hidden + attention.out_proj(mixed.transpose(1, 2).flatten(2))
            attention = layer.encoder_attn
            query = self._split(attention.q_proj(layer.encoder_attn_layer_norm(hidden)))
            mixed = F.scaled_dot_product_attention(query, *cross[index])
            if watched and index in watched and seen is not None:
                picked = watched[index]
                scale = query.shape[-1] ** -0.5
                seen.append((query[:, picked] @ cross[index][0][:, picked].transpose(-1, -2) * scale).softmax(-1))
            hidden = hidden + attention.out_proj(mixed.transpose(1, 2).flatten(2))
            normed = layer.final_layer_norm(hidden)
            hidden = hidden + layer.fc2(F.gelu(layer.fc1(normed)))
        return decoder.layer_norm(hidden[:, -keep:])

    def forced_pass(self, sequences: torch.Tensor, cross: list[tuple[torch.Tensor, torch.Tensor]],
                    watched: dict[int, list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """One teacher-forced pass over whole token sequences (b, L) from position 0: the final-norm hidden
        states of every position (b, L, d) and the ``watched`` heads' cross-attention probabilities
        (b, heads, L, S), layer by layer (``elp.heads.word_timing`` reads them)."""
        seen: list[torch.Tensor] = []
        hidden = self._step(sequences, 0, [[] for _ in self.decoder.layers], cross, keep=sequences.shape[1],
                            watched=watched, seen=seen)
        return hidden, torch.cat(seen, dim=1)

    def _logits(self, last: torch.Tensor) -> torch.Tensor:
        """Every token's logit (b, V): the int8 projection if ``quantize_int8`` made one, else float32."""
        if self.logit_projection is not None:
            return self.logit_projection(last).float()
        return (last @ self.decoder.embed_tokens.weight.t()).float()

    def _next_tokens(self, last: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        """Greedy tokens (b,): the float32 argmax over the tokens not ``blocked`` (V,) bool."""
        if self.shortlist is not None:
            return self.shortlist(last, self.decoder.embed_tokens.weight, blocked)
        return self._logits(last).masked_fill(blocked, float("-inf")).argmax(dim=-1)

    def _picks(self, hidden: torch.Tensor, blocked: torch.Tensor) -> Iterator[int]:
        """Greedy tokens of the rows of ``hidden`` (n, d) one by one, each computed when asked for: a
        drafted pass reads them up to the first that differs from its draft."""
        if self.shortlist is not None:
            yield from self.shortlist.picks(hidden, self.decoder.embed_tokens.weight, blocked)
            return
        yield from self._logits(hidden).masked_fill(blocked, float("-inf")).argmax(dim=-1).tolist()

    def _stop_loops(self, emitted: torch.Tensor, step: int, done: torch.Tensor) -> torch.Tensor:
        """Rows whose output now ends in one span repeated ``stop_repeats`` times: keep the span once
        (the repeats become -1) and end them."""
        repeats = self.config.stop_repeats
        stopped = torch.zeros_like(done)
        for row in (~done).nonzero().flatten().tolist():
            tokens = emitted[row, : step + 1].tolist()
            for span in range(1, MAX_LOOP_SPAN + 1):
                if len(tokens) < span * repeats:
                    break
                tail = tokens[-span * repeats:]
                if all(tail[i] == tail[i % span] for i in range(len(tail))):
                    emitted[row, step + 1 - span * (repeats - 1): step + 1] = -1.0
                    stopped[row] = True
                    break
        return stopped

    def token_limits(self, lengths: torch.Tensor) -> list[int]:
        """Each row's most emitted tokens: proportional to its seconds, within the decoder's positions."""
        room = self.config.max_target_positions - len(self.config.prompt_ids)
        rate = self.config.max_tokens_per_second / FRAMES_PER_SECOND
        return [min(room, int(int(length) * rate) + self.config.extra_tokens) for length in lengths.tolist()]

    @functools.cached_property
    def _blocked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks (V,) of the tokens greedy decoding never emits: at every step, and at the first."""
        blocked = torch.zeros(self.config.vocab_size, dtype=torch.bool)
        blocked[self.config.suppress_ids] = True
        first = blocked.clone()
        first[self.config.begin_suppress_ids] = True
        return blocked, first

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, prosody: torch.Tensor | None = None,
                clip_frames: torch.Tensor | None = None,
                waves: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Label logits (b, labels), or token ids (b, N); with ``word_times`` the ids then each token's start,
        end (fractions of the clip: ``clip_frames``, default ``lengths``) and probability, (b, 4N)."""
        cross = self._cross_states(features, lengths)
        if self.config.label_ids:
            return self.label_logits(cross)
        limits = self.token_limits(lengths)
        if self.config.language_ids:  # no draft and no word times (DecoderConfig)
            from elp.heads.language_detection import detected_prompts

            probabilities, prompts, cache = detected_prompts(self, cross)
            return torch.cat([probabilities, self._greedy(cross, limits, prompts, cache)], dim=1)
        if self.speculative(features.shape[0]):
            emitted = self._drafted(features, lengths, cross, limits)
        else:
            self.__dict__["last_passes"] = []
            emitted = self._greedy(cross, limits)
        if not self.word_times:
            return emitted
        from elp.heads.word_timing import token_times

        frames = (lengths if clip_frames is None else clip_frames).tolist()
        samples = waves[0] if waves is not None else None
        return torch.cat([emitted, token_times(self, cross, emitted, frames, samples).flatten(1)], dim=1)

    def label_logits(self, cross: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """(b, labels) logits of the ``label_ids`` tokens right after the prompt: one step, no decoding."""
        rows = cross[0][0].shape[0]
        prompt = torch.tensor([self.config.prompt_ids] * rows, device=self.silence.device)
        last = self._step(prompt, 0, [[] for _ in self.decoder.layers], cross)[:, -1]
        labels = self.decoder.embed_tokens.weight[self.config.label_ids]
        logits = (last @ labels.t()).float()
        if self.config.label_bias:
            logits = logits + torch.tensor(self.config.label_bias, device=logits.device)
        return logits

    # -------------------------------------------------------------------- drafted decoding
    def speculative(self, rows: int) -> bool:
        """Whether a call of ``rows`` of this set's rows decodes with the draft (greedy's tokens either way)."""
        return (self.draft is not None and rows <= self.config.draft_max_rows and not self.config.stop_repeats
                and not self.training)

    def draft_words(self, features: torch.Tensor, lengths: torch.Tensor) -> list[list[tuple[str, float]]]:
        """Each row's draft transcript (best-path CTC over characters): its words and their confidences."""
        assert self.draft is not None
        log_probs = self.draft(features.to(self.draft.out.weight.dtype)).float()
        return [greedy_words(log_probs[row, : int(length)], self.config.draft_vocab)
                for row, length in enumerate(lengths.tolist())]

    @functools.cached_property
    def _word_tokenizer(self) -> tuple[WordTokenizer, list[str], tuple[int, ...]]:
        tokens = self.tokens()
        tokenizer = WordTokenizer(tokens)
        return tokenizer, tokens, (*tokenizer.encode("."), self.config.eot_id)

    def _drafted(self, features: torch.Tensor, lengths: torch.Tensor,
                 cross: list[tuple[torch.Tensor, torch.Tensor]], limits: list[int]) -> torch.Tensor:
        from elp.heads.speculative import decode_row

        tokenizer, tokens, end_ids = self._word_tokenizer
        emitted = torch.full((features.shape[0], max(limits)), -1.0, device=features.device)
        passes = []
        for row, words in enumerate(self.draft_words(features, lengths)):
            proposer = DraftProposer([word for word, _ in words], tokenizer, tokens, end_ids,
                                     [sure >= self.config.draft_min_confidence for _, sure in words])
            row_cross = [(k[row:row + 1], v[row:row + 1]) for k, v in cross]
            ids, count = decode_row(self, row_cross, limits[row], proposer)
            passes.append(count)
            if ids:
                emitted[row, : len(ids)] = torch.tensor(ids, dtype=emitted.dtype)
        self.__dict__["last_passes"] = passes
        return emitted

    def _greedy(self, cross: list[tuple[torch.Tensor, torch.Tensor]], limits: list[int],
                prompts: torch.Tensor | None = None, cache: list[list[torch.Tensor]] | None = None) -> torch.Tensor:
        """Greedy decoding batched over the rows: one token of every row a decoder pass. ``prompts`` (b, P): each
        row's own (default: the set's), its first tokens already in ``cache`` when one is given."""
        batch, device = cross[0][0].shape[0], cross[0][0].device
        cache = cache if cache is not None else [[] for _ in self.decoder.layers]
        if prompts is None:
            prompts = torch.tensor(self.config.prompt_ids, device=device).expand(batch, -1)
        position = cache[0][0].shape[2] if cache[0] else 0  # prompt tokens the cache holds
        blocked, first_blocked = (mask.to(device) for mask in self._blocked)
        emitted = torch.full((batch, max(limits)), -1.0, device=device)
        row_limits = torch.tensor(limits, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        tokens = prompts[:, position:]
        for step in range(max(limits)):
            last = self._step(tokens, position, cache, cross)[:, -1]
            position += tokens.shape[1]
            best = self._next_tokens(last, first_blocked if step == 0 else blocked)
            done |= row_limits <= step
            ended = best == self.config.eot_id
            emitted[:, step] = torch.where(done | ended, torch.tensor(-1.0, device=device), best.float())
            done |= ended
            if self.config.stop_repeats:
                done |= self._stop_loops(emitted, step, done)
            if bool(done.all()):
                break
            tokens = best.unsqueeze(1)
        return emitted
