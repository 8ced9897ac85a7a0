"""A held-out intent phrasing family, written apart from the training templates.

``training.corpus.text`` holds ten phrasings per intent (seven train, one valid, two test). These
were written afterwards, without reusing those sentences: other verbs ("power on", "shut off",
"crank up"), synonyms, fillers ("um", "could you please") and other word orders. None equals any
corpus phrasing of any intent (checked by :func:`held_out_phrasings`). Test-only data: the guard
refuses any training row whose transcript is one of them.
"""

from __future__ import annotations

from training.corpus.text import LANGUAGES, LOCATIONS, intent_phrasings, normalise

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
    table: dict[str, list[str]] = {k: list(v) for k, v in _FIXED.items()}
    for loc in LOCATIONS:
        table[f"activate_lights_{loc}"] = [t.format(loc=loc) for t in _LIGHTS_ON_LOC]
        table[f"deactivate_lights_{loc}"] = [t.format(loc=loc) for t in _LIGHTS_OFF_LOC]
        table[f"increase_heat_{loc}"] = [t.format(loc=loc) for t in _HEAT_UP_LOC]
        table[f"decrease_heat_{loc}"] = [t.format(loc=loc) for t in _HEAT_DOWN_LOC]
    for obj in ("newspaper", "juice", "socks", "shoes"):
        table[f"bring_{obj}_none"] = [t.format(obj=obj) for t in _BRING]
    for lang in LANGUAGES:
        table[f"change language_{lang}_none"] = [t.format(lang=lang) for t in _LANG]
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
