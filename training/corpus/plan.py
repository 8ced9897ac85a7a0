"""The corpus plan: synthetic speakers, clips and their labels, all drawn from seeded generators.

The plan is pure data (no audio); generate.py renders it. Keeping it separate makes the split
and label rules easy to test without running any synthesiser.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np

from training.corpus.text import FORTUNES_DIR, sentence_pool, split_phrasings, wordnet_sentences

SPLITS = ("train", "valid", "test")

SCALES: dict[str, dict[str, int]] = {
    # speakers per split, general ASR sentences per split, emotion groups (= clips per class)
    # per split, intent clips per split, verification trials.
    "tiny": dict(spk_train=4, spk_valid=3, spk_test=3, asr_train=6, asr_valid=3, asr_test=4,
                 emo_train=2, emo_valid=1, emo_test=1, int_train=6, int_valid=3, int_test=4,
                 trials_test=40, trials_valid=20),
    "small": dict(spk_train=16, spk_valid=4, spk_test=6, asr_train=80, asr_valid=16, asr_test=30,
                  emo_train=16, emo_valid=4, emo_test=8, int_train=64, int_valid=16, int_test=30,
                  trials_test=400, trials_valid=200),
    "full": dict(spk_train=96, spk_valid=12, spk_test=24, asr_train=1200, asr_valid=150, asr_test=300,
                 emo_train=250, emo_valid=20, emo_test=60, int_train=1200, int_valid=150, int_test=300,
                 trials_test=3000, trials_valid=1000),
}
# "full-plus": every clip of "full" (same ids, same audio, same valid/test splits and trials) plus
# the sentence pool's leftover sentences as extra *training* ASR clips, each by two training
# speakers: more sentences and voices to learn spelling from, nothing new to be tested on.
SCALES["full-plus"] = dict(SCALES["full"], asr_extra_voices=2)
# "full-wide": every clip of "full-plus" plus WordNet usage examples as extra training ASR clips,
# one training speaker each (the fortune pool's ~3,600 sentences bound what the ASR set can learn
# to spell; test and valid stay the fortune/template sentences, so the test is unchanged).
SCALES["full-wide"] = dict(SCALES["full-plus"], asr_wordnet=8000)

ESPEAK_ACCENTS = ("en", "en-us", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-us-nyc")
# Variants listed by `espeak-ng --voices=variant`, minus the whispered ones (no pitch, so no
# prosody for emotion) and the heavily distorted effect voices.
ESPEAK_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
    "klatt3", "klatt4", "klatt5", "klatt6", "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie",
    "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "Denis", "Diogo", "ed",
    "edward", "edward2", "Gene", "Gene2", "gustave", "Henrique", "Hugo", "iven", "iven2", "iven3",
    "iven4", "Jacky", "john", "kaukovalta", "Lee", "linda", "marcelo", "Marco", "Mario", "max",
    "Michael", "michel", "miguel", "Mike", "Mr", "Nguyen", "pablo", "paul", "pedro", "quincy", "rob",
    "robert", "steph", "steph2", "steph3", "Storm", "travis", "victor", "zac", "anika", "grandpa",
    "grandma", "norbert", "sandro", "shelby", "AnxiousAndy", "RicishayMax", "RicishayMax2",
)
FLITE_VOICES = ("kal", "kal16", "awb", "slt", "rms")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
NO_PROSODY_CONTROL = {("flite", "rms"), ("festival", "cmu_us_slt_arctic_hts")}

# Emotion = prosody relative to the speaker's own base values (multipliers / dB offsets).
EMOTIONS: dict[str, dict[str, float]] = {
    "neutral": dict(pitch=1.00, range=1.00, rate=1.00, gain_db=0.0, tilt_db=0.0, drive=0.0),
    "happy": dict(pitch=1.22, range=1.70, rate=1.12, gain_db=2.0, tilt_db=2.0, drive=0.0),
    "sad": dict(pitch=0.84, range=0.45, rate=0.80, gain_db=-7.0, tilt_db=-5.0, drive=0.0),
    "angry": dict(pitch=1.08, range=1.30, rate=1.15, gain_db=6.0, tilt_db=6.0, drive=1.5),
}
NOISES = (("none", 0.2), ("white", 0.2), ("pink", 0.25), ("babble", 0.35))


def stable_seed(*parts: object) -> int:
    """Seed from strings/ints that does not depend on Python's randomised hash()."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little")


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: a fixed synthesiser/voice/variant plus base pitch, rate and warp."""

    id: str
    split: str
    synth: str
    voice: str
    variant: str
    pitch: float  # espeak -p, or target f0 mean (Hz) for diphone voices
    f0_std: float
    f0_shift: float
    wpm: int
    rate: float
    warp: float  # resampling factor on pitch+formants (vocal tract length)
    level_dbfs: float

    @property
    def emotion_capable(self) -> bool:
        """Only voices whose pitch the synthesiser can move get emotion clips."""
        return (self.synth, self.voice) not in NO_PROSODY_CONTROL


@dataclass
class Clip:
    """One audio file and every label it carries."""

    id: str
    split: str
    speaker: Speaker
    text: str
    source: str  # asr | emotion | intent (what the clip was made for)
    emotion: str = "neutral"
    intent: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"audio/{self.split}/{self.id}.flac"

    @property
    def seed(self) -> int:
        return int(self.extra["seed"])  # type: ignore[arg-type]


def _synth_counts(n: int) -> dict[str, int]:
    """Half espeak, 30% flite, 20% festival; every synthesiser present once n >= 3."""
    fl = max(1, round(0.3 * n))
    fe = max(1, round(0.2 * n))
    return {"espeak": max(1, n - fl - fe), "flite": fl, "festival": fe}


def make_speakers(seed: int, cfg: dict[str, int]) -> list[Speaker]:
    """Speakers for each split; espeak variants are partitioned so test variants are unseen."""
    rng = np.random.default_rng([seed, 1])
    variants = [ESPEAK_VARIANTS[i] for i in rng.permutation(len(ESPEAK_VARIANTS))]
    n = len(variants)
    var_split = {"test": variants[: n // 4], "valid": variants[n // 4: n // 4 + n // 7],
                 "train": variants[n // 4 + n // 7:]}
    speakers: list[Speaker] = []
    for split in SPLITS:
        srng = np.random.default_rng([seed, 2, SPLITS.index(split)])
        counts = _synth_counts(cfg[f"spk_{split}"])
        k = 0
        for synth in ("espeak", "flite", "festival"):
            for j in range(counts[synth]):
                sid = f"spk-{split}-{k:03d}"
                k += 1
                if synth == "espeak":
                    voice = ESPEAK_ACCENTS[int(srng.integers(len(ESPEAK_ACCENTS)))]
                    variant = var_split[split][j % len(var_split[split])]
                    pitch, f0_std, f0_shift = float(srng.uniform(25, 75)), 0.0, 1.0
                    wpm, rate, warp = int(srng.integers(140, 186)), 1.0, float(srng.uniform(0.94, 1.06))
                else:
                    pool = FLITE_VOICES if synth == "flite" else FESTIVAL_VOICES
                    voice, variant = pool[(j + int(srng.integers(len(pool)))) % len(pool)], ""
                    pitch, f0_std = float(srng.uniform(85, 150)), float(srng.uniform(10, 25))
                    f0_shift = float(srng.uniform(0.85, 1.2))
                    wpm, rate, warp = 0, float(srng.uniform(0.9, 1.12)), float(srng.uniform(0.87, 1.15))
                speakers.append(Speaker(
                    id=sid, split=split, synth=synth, voice=voice, variant=variant,
                    pitch=round(pitch, 2), f0_std=round(f0_std, 2), f0_shift=round(f0_shift, 4), wpm=wpm,
                    rate=round(rate, 4), warp=round(warp, 4),
                    level_dbfs=round(float(srng.uniform(-28, -20)), 2)))
    return speakers


def _partition_sentences(pool: list[str], cfg: dict[str, int]) -> dict[str, dict[str, list[str]]]:
    """Disjoint sentence sets per split (test first), with short ones reserved for emotion."""
    short = [s for s in pool if len(s.split()) <= 9]
    short_set: set[str] = set()
    emo: dict[str, list[str]] = {}
    for split in ("test", "valid", "train"):
        emo[split] = short[len(short_set): len(short_set) + cfg[f"emo_{split}"]]
        short_set.update(emo[split])
    rest = [s for s in pool if s not in short_set]
    out: dict[str, dict[str, list[str]]] = {}
    i = 0
    for split in ("test", "valid", "train"):
        n = cfg[f"asr_{split}"]
        out[split] = {"asr": rest[i: i + n], "emotion": emo[split]}
        i += n
    if i > len(rest):
        raise ValueError(f"sentence pool too small: need {i}, have {len(rest)}")
    out["babble"] = {"asr": rest[i: i + 24], "emotion": []}
    out["extra"] = {"asr": rest[i + 24:], "emotion": []}
    return out


def make_plan(seed: int, scale: str) -> tuple[list[Speaker], list[Clip], dict[str, object]]:
    """Speakers, clips and the sentence-pool description for a (seed, scale)."""
    cfg = SCALES[scale]
    speakers = make_speakers(seed, cfg)
    by_split = {s: [sp for sp in speakers if sp.split == s] for s in SPLITS}
    pool, pool_info = sentence_pool(seed)
    try:
        sents = _partition_sentences(pool, cfg)
    except ValueError as error:
        if pool_info["fortune_sentences"]:
            raise
        raise ValueError(f"{error}: no sentences came from the Debian fortune files ({FORTUNES_DIR}); "
                         f"scale {scale!r} needs them: apt-get install fortunes fortunes-min (docs/corpus.md)"
                         ) from error
    phr = split_phrasings(seed)
    intents = sorted(phr)
    clips: list[Clip] = []

    def add(cid: str, split: str, spk: Speaker, text: str, source: str, **kw: object) -> None:
        clips.append(Clip(cid, split, spk, text, source, extra={"seed": stable_seed(seed, cid)}, **kw))

    for si, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, 3, si])
        spk = by_split[split]
        # General ASR sentences: valid/test mostly by unseen speakers; a third of test by seen ones.
        for i, text in enumerate(sents[split]["asr"]):
            pool_spk = spk
            if split == "test" and i % 3 == 2:
                pool_spk = by_split["train"]
            add(f"asr-{split}-{i:05d}", split, pool_spk[int(rng.integers(len(pool_spk)))], text, "asr")
        # Emotion: one group = one speaker x one sentence rendered in all four classes.
        emo_spk = [s for s in spk if s.emotion_capable]
        for g, text in enumerate(sents[split]["emotion"]):
            sp = emo_spk[int(rng.integers(len(emo_spk)))]
            for emo in EMOTIONS:
                add(f"emo-{split}-{g:05d}-{emo}", split, sp, text, "emotion", emotion=emo)
        # Intent: balanced over intents, phrasings from this split's held-out set only.
        for i in range(cfg[f"int_{split}"]):
            intent = intents[i % len(intents)]
            phrase_list = phr[intent][split]
            text = phrase_list[int(rng.integers(len(phrase_list)))]
            add(f"int-{split}-{i:05d}", split, spk[int(rng.integers(len(spk)))], text, "intent",
                intent=intent)
    voices = cfg.get("asr_extra_voices", 0)
    rng = np.random.default_rng([seed, 4])
    for i, text in enumerate(sents["extra"]["asr"] if voices else []):
        for k, position in enumerate(rng.choice(len(by_split["train"]), size=voices, replace=False)):
            add(f"asrx-train-{i:05d}-{k}", "train", by_split["train"][int(position)], text, "asr")
    wide = cfg.get("asr_wordnet", 0)
    if wide:
        held_out = set(pool)  # no WordNet example may repeat any pool sentence (test and valid included)
        examples = [s for s in wordnet_sentences() if s not in held_out]
        if len(examples) < wide:
            raise ValueError(f"{scale} needs {wide} WordNet sentences, found {len(examples)}: "
                             "install wordnet-base")
        wide_rng = np.random.default_rng([seed, 5])
        order = wide_rng.permutation(len(examples))[:wide]
        chosen = [examples[i] for i in order]
        pool_info = dict(pool_info, wordnet_sentences=len(chosen),
                         wordnet_sha256=hashlib.sha256("\n".join(chosen).encode()).hexdigest())
        for i, text in enumerate(chosen):
            spk = by_split["train"][int(wide_rng.integers(len(by_split["train"])))]
            add(f"asrw-train-{i:05d}", "train", spk, text, "asr")
    info = {"sentence_pool": pool_info, "babble_sentences": sents["babble"]["asr"]}
    return speakers, clips, info


def speaker_meta(sp: Speaker) -> dict[str, object]:
    """Speaker description for corpus.json."""
    return asdict(sp)
