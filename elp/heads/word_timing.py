"""Word times and confidences of a Whisper decoder set's transcript (``WhisperDecoderHead.word_times``).

On the model stage: one teacher-forced decoder pass over each row's answered tokens gives, per token, the
alignment heads' cross-attention over the clip's frames (``elp.decoding.token_alignment`` turns it into a run
of frames) and the probability the decoder gave that token. In post-processing: tokens grouped into words,
each word put in the answer's spoken form, with its tokens' span and mean probability.

A timed row's output is ``[ids (N) | starts (N) | ends (N) | probabilities (N)]``: starts and ends as
fractions of the clip, -1 after the row's last token, so the post-processor needs nothing but the row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from elp.decoding.token_alignment import token_spans, word_groups

if TYPE_CHECKING:
    from elp.heads.seq2seq import WhisperDecoderHead

#: parts of a timed row: ids, starts, ends, probabilities
TIMED_PARTS = 4
SAMPLES_PER_FRAME = 320  # Whisper encoder frames at 16 kHz (20 ms)
#: frames quieter than this many dB under the clip's loud frames are not a word's edge (a fixed rule, not tuned:
#: the word_times benchmark's pauses are digital silence, which any floor finds)
QUIET_DB = 40.0
#: a token's attention = this share of the position that reads it + the rest of the one that chose it. The one
#: that chose it looks ~0.2 s early, the one that reads it late; 0.3 put the boundaries between words closest to
#: the true pauses on validation sentences (median 5 ms from the pause against 51 ms for the choosing position
#: alone; the word_times benchmark's sentences, valid split; see the asr-whisper card)
READING_SHARE = 0.3
#: frames (20 ms) either side of a boundary between words searched for a pause to move it to
PAUSE_WINDOW = 10


def watched_heads(alignment_heads: Sequence[Sequence[int]]) -> dict[int, list[int]]:
    """``[layer, head]`` pairs -> the heads to watch per layer."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in alignment_heads:
        by_layer.setdefault(int(layer), []).append(int(head))
    return by_layer


def frame_levels(samples: torch.Tensor, frames: int) -> np.ndarray:
    """Each encoder frame's level (dB of its mean square; 320 samples = 20 ms) over the first ``frames``."""
    used = samples[: frames * SAMPLES_PER_FRAME].float()
    used = torch.nn.functional.pad(used, (0, frames * SAMPLES_PER_FRAME - used.shape[0]))
    power = used.view(frames, SAMPLES_PER_FRAME).pow(2).mean(dim=1)
    return (10 * torch.log10(power + 1e-10)).cpu().numpy()


def _nearest_pause(quiet: np.ndarray, boundary: int, low: int, high: int) -> tuple[int, int] | None:
    """The run of quiet frames within ``[low, high]`` nearest to ``boundary``, as (first, end exclusive)."""
    candidates = np.flatnonzero(quiet[low : high + 1]) + low
    if candidates.size == 0:
        return None
    first = last = int(candidates[np.abs(candidates - boundary).argmin()])
    while first - 1 >= low and quiet[first - 1]:
        first -= 1
    while last + 1 <= high and quiet[last + 1]:
        last += 1
    return first, last + 1


def fitted_to_sound(spans: list[tuple[int, int]], opens_word: list[bool], levels: np.ndarray) -> list[tuple[int, int]]:
    """Token spans with words' edges where the sound is. Quiet = ``QUIET_DB`` under the clip's loud frames (its
    95th percentile level). A boundary between two words with a pause within ``PAUSE_WINDOW`` frames moves to
    that pause (the first word ends where it begins, the next starts after it); then each word starts at its
    first and ends after its last sounding frame. Why: attention runs split every frame between tokens, so a
    pause counts as a word. Words with no pause near them, and the frames inside a word, stay as they are."""
    quiet = levels < float(np.percentile(levels, 95)) - QUIET_DB
    fitted = list(spans)
    groups = word_groups(opens_word)
    for before, after in zip(groups, groups[1:], strict=False):
        boundary = fitted[after[0]][0]
        low = max(fitted[before[0]][0] + 1, boundary - PAUSE_WINDOW)
        high = min(fitted[after[-1]][1] - 1, boundary + PAUSE_WINDOW, len(quiet) - 1)
        pause = _nearest_pause(quiet, boundary, low, high) if low <= high else None
        if pause is not None:
            fitted[before[-1]] = (fitted[before[-1]][0], max(pause[0], fitted[before[-1]][0] + 1))
            fitted[after[0]] = (min(pause[1], fitted[after[0]][1] - 1), fitted[after[0]][1])
    for group in groups:
        first, last = group[0], group[-1]
        sounding = np.flatnonzero(~quiet[fitted[first][0] : fitted[last][1]]) + fitted[first][0]
        if sounding.size:
            fitted[first] = (int(sounding[0]), fitted[first][1])
            fitted[last] = (fitted[last][0], int(sounding[-1]) + 1)
    return fitted


@torch.inference_mode()
def token_times(head: WhisperDecoderHead, cross: list[tuple[torch.Tensor, torch.Tensor]], emitted: torch.Tensor,
                clip_frames: list[int], samples: torch.Tensor | None = None) -> torch.Tensor:
    """``(b, 3, N)``: each emitted token's first and end frame as fractions of its clip, and its probability;
    -1 where the row has no token. One teacher-forced pass for all rows (right-padded: the causal mask keeps
    the padding out of the positions read). ``samples`` (b, S): the rows' audio, to put words' edges where
    they sound (``fitted_to_sound``)."""
    batch, width = emitted.shape
    device = emitted.device
    times = torch.full((batch, 3, width), -1.0, device=device)
    rows = [[int(token) for token in emitted[row].tolist() if token >= 0] for row in range(batch)]
    longest = max((len(ids) for ids in rows), default=0)
    if longest == 0:
        return times
    prompt = list(head.config.prompt_ids)
    sequences = torch.tensor([prompt + ids + [head.config.eot_id] * (longest - len(ids)) for ids in rows],
                             device=device)
    hidden, attention = head.forced_pass(sequences, cross, watched_heads(head.config.alignment_heads))
    weight = head.decoder.embed_tokens.weight
    for row, ids in enumerate(rows):
        if not ids:
            continue
        predicting = slice(len(prompt) - 1, len(prompt) - 1 + len(ids))  # the positions that chose each token
        logits = hidden[row, predicting].float() @ weight.float().t()
        chosen = torch.tensor(ids, device=device)
        times[row, 2, : len(ids)] = logits.log_softmax(-1).gather(1, chosen[:, None]).squeeze(1).exp()
        frames = max(1, min(int(clip_frames[row]), attention.shape[-1]))
        reading = slice(predicting.start + 1, predicting.stop + 1)  # the positions that read each token
        looked = ((1 - READING_SHARE) * attention[row, :, predicting, :frames]
                  + READING_SHARE * attention[row, :, reading, :frames])
        spans = token_spans(looked.cpu())
        if spans is not None and samples is not None:
            table = head.opens_word  # specials (ids from eot_id up) spell nothing and open no word
            opens = [token < len(table) and table[token] for token in ids]
            spans = fitted_to_sound(spans, opens, frame_levels(samples[row], frames))
        if spans is not None:
            bounds = torch.tensor(spans, dtype=times.dtype, device=device) / frames
            times[row, 0, : len(ids)], times[row, 1, : len(ids)] = bounds[:, 0], bounds[:, 1]
    return times


def timed_words(output: torch.Tensor, token_bytes: Callable[[int], bytes], spell: Callable[[str], str],
                text: str) -> list[tuple[str, float, float, float]] | None:
    """``(word, start, end, confidence)`` of each word of ``text`` from a timed row (start/end fractions of the
    clip). A word of the decoder's (tokens from one that opens with a space to the next) is put in the
    answer's form by ``spell``; where that gives several words ("25" -> "twenty five") they share its span by
    letters. Confidence: the mean probability of the word's tokens. None when the row is untimed or the words
    do not spell ``text`` exactly."""
    ids, starts, ends, probabilities = output.float().view(TIMED_PARTS, -1)
    kept = [i for i, token in enumerate(ids.tolist()) if token >= 0]
    if not kept or any(float(starts[i]) < 0 for i in kept):
        return [] if not text else None
    pieces = [token_bytes(int(ids[i])) for i in kept]
    words: list[tuple[str, float, float, float]] = []
    for group in word_groups([piece.startswith(b" ") for piece in pieces]):
        spoken = spell(b"".join(pieces[g] for g in group).decode("utf-8", errors="replace")).split()
        if not spoken:
            continue
        first, last = float(starts[kept[group[0]]]), float(ends[kept[group[-1]]])
        confidence = sum(float(probabilities[kept[g]]) for g in group) / len(group)
        letters = [len(word) for word in spoken]
        at = first
        for word, count in zip(spoken, letters, strict=True):
            step = (last - first) * count / sum(letters)
            words.append((word, at, at + step, confidence))
            at += step
    return words if " ".join(word for word, *_ in words) == text else None
