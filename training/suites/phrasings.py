"""A held-out intent phrasing family, written apart from the training templates.

``training.corpus.text`` holds ten phrasings per intent (seven train, one valid, two test). These
were written afterwards, without reusing those sentences: other verbs ("power on", "shut off",
"crank up"), synonyms, fillers ("um", "could you please") and other word orders. None equals any
corpus phrasing of any intent (checked by :func:`held_out_phrasings`). Test-only data: the guard
refuses any training row whose transcript is one of them.

    python -m training.suites.phrasings [--out data/phrasings]   # the near test voices speak them
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from training.corpus.text import expand_intent_templates, intent_phrasings, normalise

FAMILY = "held-out-phrasings-v1"

_LIGHTS_ON_LOC = ("um could you please brighten the {loc}", "power on the lights in the {loc}",
                  "i'd like the {loc} lights turned on", "can we get some light in the {loc}",
                  "in the {loc} turn the lights on please")
_LIGHTS_OFF_LOC = ("please shut off the {loc} lights", "um make the {loc} dark",
                   "i'd like the {loc} lights turned off", "can you darken the {loc}",
                   "in the {loc} switch the lights off please")
_HEAT_UP_LOC = ("um could you please make the {loc} hotter", "it's freezing in the {loc}",
                "bump up the heating in the {loc}", "can you boost the temperature in the {loc}",
                "the {loc} needs to be warmer")
_HEAT_DOWN_LOC = ("please make the {loc} less hot", "um it's boiling in the {loc}",
                  "can you lower the heating in the {loc}", "the {loc} is way too warm",
                  "bring the temperature down in the {loc}")
_BRING = ("um could you please grab my {obj}", "can you hand me the {obj}", "i'd like my {obj} brought here",
          "go and fetch my {obj} for me", "pass me the {obj} please")
_LANG = ("um could you please switch over to {lang}", "i'd like to speak {lang}", "make the language {lang}",
         "can you change it to {lang}", "{lang} as the language please")

_FIXED: dict[str, tuple[str, ...]] = {
    "activate_lights_none": ("um could you please brighten the room", "power on the lights",
                             "i'd like the lights turned on", "can we get some light in here",
                             "illuminate the room please"),
    "deactivate_lights_none": ("please shut off the lights", "um lights out now", "i'd like the lights turned off",
                               "can you darken the room", "power down the lights"),
    "activate_lamp_none": ("um could you please power on the lamp", "i'd like the lamp switched on",
                           "the lamp on now please", "fire up the lamp", "can you light up the lamp for me"),
    "deactivate_lamp_none": ("please shut off the lamp", "um the lamp can go off now",
                             "i'd like the lamp switched off", "power down the lamp",
                             "can you put out the lamp for me"),
    "activate_music_none": ("um could you please put a song on", "i'd love to listen to some tunes",
                            "begin the music", "can we have some music", "let's hear a song"),
    "deactivate_music_none": ("please halt the music", "um enough music", "can you end the music",
                              "shut the music off", "i'd like the music stopped"),
    "increase_volume_none": ("um could you please crank it up", "boost the sound", "i'd like it a bit louder",
                             "can you pump up the volume", "the volume higher please"),
    "decrease_volume_none": ("please lower the sound", "um it's way too noisy", "can you make the sound softer",
                             "i'd like it a bit quieter", "reduce the volume please"),
    "increase_heat_none": ("um could you please make it hotter", "i'm freezing", "bump up the heating",
                           "can you boost the temperature", "it's chilly in here"),
    "decrease_heat_none": ("please make it less hot", "um i'm boiling", "can you lower the heating",
                           "it's way too warm in here", "bring the temperature down"),
    "change language_none_none": ("um could you please pick another language", "i'd like to switch languages",
                                  "can i change the language setting", "a different language please",
                                  "let me choose another language"),
}


def held_out_phrasings() -> dict[str, list[str]]:
    """intent -> its held-out phrasings (normalised), for exactly the corpus' intents.

    Raises when a phrasing equals any corpus phrasing or repeats, so the family stays apart.
    """
    table = expand_intent_templates(_FIXED, _LIGHTS_ON_LOC, _LIGHTS_OFF_LOC, _HEAT_UP_LOC, _HEAT_DOWN_LOC,
                                    _BRING, _LANG)
    corpus = intent_phrasings()
    if set(table) != set(corpus):
        raise AssertionError(f"intents differ from the corpus': {sorted(set(table) ^ set(corpus))}")
    out = {k: [normalise(p) for p in table[k]] for k in sorted(table)}
    existing = {p for phrasings in corpus.values() for p in phrasings}
    flat = [p for phrasings in out.values() for p in phrasings]
    clashes = sorted(set(flat) & existing)
    if clashes or len(set(flat)) != len(flat):
        raise AssertionError(f"held-out phrasings must be new and distinct; clashes: {clashes}")
    return out


def held_out_set() -> frozenset[str]:
    return frozenset(p for phrasings in held_out_phrasings().values() for p in phrasings)


#: held-out phrasings found (2026-12-03) in the paraphrase family a shipped intent set was trained on: the two
#: families were written apart and met by chance. They stay held out (the guard refuses them for training, the
#: generator drops them), but the shipped set heard them, so reported accuracies leave their clips out.
SEEN_IN_TRAINING = frozenset({"the kitchen is way too warm", "boost the sound", "i'd like it a bit louder"})


def build_near(out: Path, seed: int = 0, scale: str = "full", log=print) -> dict:
    """Render the family with the near corpus' TEST speakers into ``out`` (suite ``phrasings``).

    Each phrasing once, speakers dealt in a seeded order, through the corpus' own synthesis and
    post-processing (``training.corpus.generate``), so only the wording is new.
    """
    import numpy as np

    from training.corpus import generate
    from training.corpus.plan import Clip, make_plan, stable_seed
    from training.data.manifest import ManifestRow
    from training.suites.writer import write_suite

    started = time.time()
    speakers, _, info = make_plan(seed, scale)
    test_speakers = [s for s in speakers if s.split == "test"]
    items = [(k, p) for k, ps in held_out_phrasings().items() for p in ps]
    order = np.random.default_rng([seed, 77]).permutation(len(items)) % len(test_speakers)
    clips = [Clip(f"phr-test-{i:04d}", "test", test_speakers[int(order[i])], text, "intent", intent=intent,
                  extra={"seed": stable_seed(seed, FAMILY, i)}) for i, (intent, text) in enumerate(items)]
    generate._init(generate._babble_bank(list(info["babble_sentences"]), seed))  # type: ignore[arg-type]
    done = {}
    for synth in ("festival", "flite", "espeak"):
        chosen = [c for c in clips if c.speaker.synth == synth and not (out / c.path).is_file()]
        for start in range(0, len(chosen), generate.CHUNK):
            for clip_id, seconds, meta in generate._process_chunk((str(out), chosen[start:start + generate.CHUNK])):
                done[clip_id] = (seconds, meta)
    log(f"phrasings: rendered {len(done)} of {len(clips)} clips")
    import soundfile as sf

    rows = []
    for clip in clips:
        seconds, meta = done.get(clip.id) or (round(sf.info(out / clip.path).frames / 16000, 3), {})
        rows.append(ManifestRow(id=clip.id, path=clip.path, duration_s=seconds, split="test", task="intent",
                                speaker=clip.speaker.id, text=clip.text, label=clip.intent,
                                meta={**meta, "synth": clip.speaker.synth, "phrasing_family": FAMILY}))
    summary_info = {"suite": "phrasings", "seed": seed, "scale": scale, "phrasing_family": FAMILY,
                    "speakers": sorted({c.speaker.id for c in clips}),
                    "notes": "held-out phrasing family spoken by the near corpus' test speakers"}
    return write_suite(out, {"intent": rows}, {}, summary_info, started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="render the held-out phrasing family with near test voices")
    parser.add_argument("--out", type=Path, default=Path("data/phrasings"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", default="full")
    args = parser.parse_args(argv)
    summary = build_near(args.out, args.seed, args.scale)
    print({k: summary[k] for k in ("counts", "manifest_sha256", "build_seconds")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
