"""Live streams cut into utterances: the chunk-by-chunk voice detector equals the whole-clip one, and the
endpointer finds each spoken sentence of a stream once, whatever size the pieces come in, with its pauses,
padding, forced cuts and partial views as documented."""

from __future__ import annotations

import numpy as np
import pytest

from elp.streaming import Endpointer, EndpointSettings, StreamingVoiceDetector, StreamResampler, mulaw_samples
from elp.voice_activity import CHUNK, speech_probabilities

RATE = 16000
SENTENCES = ("turn on the lights in the kitchen", "what is the weather like tomorrow", "play some music")


def quiet(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * 1e-3).astype(np.float32)


@pytest.fixture(scope="module")
def conversation(spoken_clip) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Three sentences with 1.2 s pauses between them (and 0.8 s before and after), and where each one is."""
    parts, spans, at = [quiet(0.8, 0)], [], int(0.8 * RATE)
    for i, sentence in enumerate(SENTENCES):
        speech = spoken_clip(sentence)
        spans.append((at, at + len(speech)))
        parts += [speech, quiet(1.2 if i < len(SENTENCES) - 1 else 0.8, i + 1)]
        at += len(speech) + len(parts[-1])
    return np.concatenate(parts), spans


def pieces(audio: np.ndarray, sizes: list[int]):
    """``audio`` in pieces whose sizes cycle through ``sizes``."""
    at, i = 0, 0
    while at < len(audio):
        yield audio[at:at + sizes[i % len(sizes)]]
        at += sizes[i % len(sizes)]
        i += 1


def run(audio: np.ndarray, sizes: list[int], settings: EndpointSettings | None = None):
    endpointer = Endpointer(settings)
    found = []
    for piece in pieces(audio, sizes):
        found += endpointer.push(piece)
    return found + endpointer.finish(), endpointer


def test_streamed_probabilities_equal_the_whole_clip(conversation) -> None:
    audio, _ = conversation
    detector = StreamingVoiceDetector()
    streamed = np.concatenate([detector.push(p) for p in pieces(audio, [100, 1000, 37, 4096])] + [detector.flush()])
    whole = speech_probabilities(audio, RATE)
    assert streamed.shape == whole.shape
    assert np.abs(streamed - whole).max() < 1e-5


@pytest.mark.parametrize("sizes", [[320], [16000], [CHUNK], [7, 3000, 811]])
def test_each_sentence_is_one_final_utterance_whatever_the_piece_sizes(conversation, sizes) -> None:
    audio, spans = conversation
    found, _ = run(audio, sizes, EndpointSettings(partial_interval_s=0))
    finals = [u for u in found if u.final]
    assert [u.index for u in finals] == [0, 1, 2]
    pad = EndpointSettings().pad_s * RATE
    for utterance, (start, end) in zip(finals, spans, strict=True):
        # the utterance holds its sentence (espeak's own lead-in and trailing silence aside) and no other
        assert start - pad - CHUNK <= utterance.start <= start + 0.25 * RATE
        assert end - 0.3 * RATE <= utterance.end <= end + pad + CHUNK + 0.6 * RATE
        assert np.array_equal(utterance.waveform, audio[utterance.start:utterance.end])
        assert not utterance.forced


def test_piece_sizes_do_not_change_the_cuts(conversation) -> None:
    audio, _ = conversation
    bounds = {tuple((u.start, u.end) for u in run(audio, sizes)[0] if u.final) for sizes in ([320], [5000, 13])}
    assert len(bounds) == 1


def test_partials_grow_and_precede_their_final(conversation) -> None:
    audio, _ = conversation
    found, _ = run(audio, [320], EndpointSettings(partial_interval_s=0.5))
    first = [u for u in found if u.index == 0]
    partials, final = first[:-1], first[-1]
    assert final.final and partials and not any(p.final for p in partials)
    ends = [p.end for p in partials]
    assert ends == sorted(ends) and ends[-1] <= final.end + 0.6 * RATE
    assert all(p.start == final.start for p in partials)
    assert ends[0] - final.start >= 0.5 * RATE


def test_a_long_voice_is_cut_at_max_utterance_and_goes_on(spoken_clip) -> None:
    speech = np.concatenate([spoken_clip(s) for s in SENTENCES * 2])  # ~10 s with no pause
    settings = EndpointSettings(max_utterance_s=4.0, partial_interval_s=0, end_pause_s=1.0)  # espeak trails 0.3 s
    found, _ = run(np.concatenate([quiet(0.5, 0), speech, quiet(1.0, 1)]), [800], settings)
    assert len(found) >= 3
    assert all(u.end - u.start <= 4.0 * RATE for u in found)
    assert all(u.forced for u in found[:-1]) and not found[-1].forced
    assert all(a.end == b.start for a, b in zip(found, found[1:], strict=False))  # nothing lost between cuts


def voiced(clip: np.ndarray) -> np.ndarray:
    """espeak's reading without its own leading and trailing silence."""
    loud = np.flatnonzero(np.abs(clip) > 0.01)
    return clip[loud[0]:loud[-1] + 1]


@pytest.mark.parametrize("pause_s", [0.4, 0.45])
def test_utterances_never_overlap_even_after_a_pause_just_over_the_end_pause(spoken_clip, pause_s) -> None:
    """A pause that just closes the first utterance: the second's padding would reach back into the first."""
    audio = np.concatenate([quiet(0.5, 0), voiced(spoken_clip(SENTENCES[0])), quiet(pause_s, 1),
                            voiced(spoken_clip(SENTENCES[2])), quiet(1.0, 2)])
    found, _ = run(audio, [320], EndpointSettings(partial_interval_s=0))
    assert len(found) == 2 and found[0].end <= found[1].start


def test_silence_noise_and_a_click_make_no_utterance() -> None:
    click = np.zeros(RATE // 10, np.float32)
    click[:40] = 0.8
    audio = np.concatenate([quiet(2.0, 0), click, np.zeros(RATE, np.float32), quiet(1.0, 1) * 30])
    found, endpointer = run(audio, [640])
    assert found == [] and not endpointer.open


def test_memory_is_bounded_by_one_utterance(spoken_clip) -> None:
    endpointer = Endpointer(EndpointSettings(max_utterance_s=4.0))
    speech = spoken_clip("the quick brown fox jumps over the lazy dog")
    longest = 0
    for _ in range(6):
        for piece in pieces(np.concatenate([speech, quiet(1.0, 2)]), [1600]):
            endpointer.push(piece)
            longest = max(longest, len(endpointer._audio))
    assert longest <= (4.0 + 1.0) * RATE  # one utterance and the pre-roll, not the minutes streamed


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        EndpointSettings(start_probability=0.3, end_probability=0.5)
    with pytest.raises(ValueError):
        EndpointSettings(max_utterance_s=0.5)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_the_stream_resampler_equals_resample_poly_on_the_whole_stream_whatever_the_pieces(rate) -> None:
    from math import gcd

    from scipy.signal import resample_poly

    audio = np.random.default_rng(rate).standard_normal(rate * 2 + 77).astype(np.float32)
    whole = resample_poly(audio, RATE // gcd(rate, RATE), rate // gcd(rate, RATE))
    for sizes in ([160], [1000, 7, 333], [len(audio)]):
        resampler = StreamResampler(rate)
        streamed = np.concatenate([resampler.push(p) for p in pieces(audio, sizes)] + [resampler.flush()])
        assert streamed.shape == whole.shape and np.abs(streamed - whole).max() < 1e-5, sizes
    assert np.array_equal(StreamResampler(RATE).push(audio), audio)  # 16 kHz passes through


def test_mulaw_decodes_as_libsndfile_does() -> None:
    import io

    import soundfile as sf

    audio = np.random.default_rng(1).uniform(-1, 1, 4000).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, audio, 8000, subtype="ULAW", format="RAW")
    reference, _ = sf.read(io.BytesIO(buffer.getvalue()), dtype="float32", samplerate=8000, channels=1,
                           subtype="ULAW", format="RAW")
    assert np.array_equal(mulaw_samples(buffer.getvalue()), reference)
    assert np.abs(mulaw_samples(buffer.getvalue()) - audio).max() < 0.03  # 8-bit companding
