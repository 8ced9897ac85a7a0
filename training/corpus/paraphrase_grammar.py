"""The intent paraphrase grammar: per group of intents, its frames, wordings and WordNet senses.

Placeholders: {V} a whole verb ("switch on", "activate"), {Vp} a particle verb's stem used with the
particle written in the frame ("flip {O} on"), {O} an object phrase, {N} the object's bare noun for
"the {M} {N}" (M = the location as a modifier), {L} "in the kitchen" (location intents only), {Lo} an
optional location (" in the kitchen"; for "none" intents "", " in here", " in this room"), {A} an
adjective of the group's hint ("freezing"), {LANG} the target language. Frames written here are
unlike the corpus' ten phrasings on purpose (different constructions, verbs and order); overlaps with
the corpus' valid/test phrasings are removed by :func:`training.corpus.paraphrase.paraphrase_family`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from training.corpus.text import LANGUAGES, LOCATIONS

# Hesitations and politeness before an imperative; after it. The first entry of each is "no filler".
FILLER_PREFIXES = ("", "um", "uh", "er", "hey", "okay", "so", "please", "could you", "could you please",
                   "can you", "can you please", "would you", "would you please", "will you", "i'd like you to",
                   "i want you to", "i need you to", "go ahead and", "do me a favour and", "hey could you",
                   "um can you", "uh please", "if you could", "just", "okay now", "right so", "excuse me could you")
FILLER_SUFFIXES = ("", "please", "thanks", "thank you", "for me", "now", "right now", "if you don't mind",
                   "when you get a chance", "would you", "okay", "please and thank you", "for me please", "now please")
# A hint ("it's freezing in the kitchen") takes an interjection at most.
INTERJECTIONS = ("", "um", "uh", "oh", "hey", "well", "gosh", "you know", "hmm", "ugh", "wow")


@dataclass(frozen=True)
class Group:
    """Intents that share wordings: its frames (id -> (family, template)) and word lists."""

    name: str
    intents: tuple[str, ...]
    frames: dict[str, tuple[str, str]]
    words: dict[str, tuple[str, ...]]
    wordnet: dict[str, tuple[tuple[str, str, int], ...]] = field(default_factory=dict)
    odd: frozenset[str] = frozenset()  # WordNet lemmas nobody says in a command
    per_object: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def frames_for(self, intent: str) -> dict[str, tuple[str, str]]:
        """The group's frames for one intent: frames named ``none-...`` only for an intent whose last
        distinguishing slot is "none" (language without a target); the others all apply, and those
        needing a slot the intent lacks ({L} for a "none" location) fill to nothing."""
        bare = intent.split("_")[1] == "none"
        return {k: v for k, v in self.frames.items() if not k.startswith("none-") or bare}


def _located(action: str, obj: str) -> tuple[str, ...]:
    return tuple(f"{action}_{obj}_{loc}" for loc in (*LOCATIONS, "none"))


_LIGHT_NOUNS = ("lights", "light", "lighting", "ceiling lights", "overhead light", "main lights")
_LIGHT_OBJECTS = tuple(f"the {n}" for n in _LIGHT_NOUNS) + ("all the lights",)
_LAMP_NOUNS = ("lamp", "desk lamp", "table lamp", "reading lamp", "little lamp", "floor lamp")
_LAMP_OBJECTS = tuple(f"the {n}" for n in _LAMP_NOUNS) + ("my lamp", "that lamp")
_ON_STEMS = ("switch", "turn", "flip", "flick", "put", "click")
_OFF_STEMS = ("switch", "turn", "flip", "flick", "shut", "click")
_ODD = frozenset({"cut", "convey", "lour", "minify", "lessen", "exchange", "lead off", "commence", "give up",
                  "lay off", "quit", "discontinue", "switch over", "shift"})


def _switch_group(name: str, intents: tuple[str, ...], on: bool, nouns: tuple[str, ...],
                  objects: tuple[str, ...], hints: dict[str, tuple[str, str]]) -> Group:
    """Lights and lamp, on and off: the same constructions with the particle and verbs of each."""
    particle = "on" if on else "off"
    verbs = ("switch on", "turn on", "flip on", "flick on", "power on", "activate", "power up", "bring up") if on \
        else ("switch off", "turn off", "flip off", "flick off", "shut off", "power off", "deactivate", "turn out",
              "put out", "power down")
    frames = {
        "verb-object": ("imperative", "{V} {O}{Lo}"),
        "particle-after": ("imperative", f"{{Vp}} {{O}} {particle}{{Lo}}"),
        "modifier": ("imperative", "{V} the {M} {N}"),
        "modifier-particle-after": ("imperative", f"{{Vp}} the {{M}} {{N}} {particle}"),
        "location-first": ("reorder", f"{{L}} {{Vp}} {{O}} {particle}"),
        "location-first-verb": ("reorder", "{L} {V} {O}"),
        "object-topic": ("reorder", f"{{O}}{{Lo}} {{Vp}} it {particle}"),
        "want": ("imperative", f"i want {{O}} {particle}{{Lo}}"),
        "can-we-have": ("imperative", f"can we have {{O}} {particle}{{Lo}}"),
        "noun-state": ("reorder", f"{{O}}{{Lo}} {particle}"),
    } | hints
    return Group(name, intents, frames,
                 {"V": verbs, "Vp": _ON_STEMS if on else _OFF_STEMS, "O": objects, "N": nouns,
                  "A": ("dark", "dim", "gloomy", "pitch dark", "pitch black") if on
                  else ("bright", "glaring", "blinding", "dazzling", "too bright")},
                 {"V": (("turn_on", "verb", 1),) if on else (("turn_off", "verb", 1),)}, _ODD)


_LIGHT_HINTS_ON = {"hint-dark": ("indirect", "it's {A}{Lo}"), "hint-see": ("indirect", "i can't see a thing{Lo}"),
                   "hint-room": ("indirect", "the {M} is {A}")}
_LIGHT_HINTS_OFF = {"hint-bright": ("indirect", "it's {A}{Lo}"),
                    "hint-nobody": ("indirect", "there's nobody{Lo} so {V} {O}"),
                    "hint-room": ("indirect", "the {M} is way too bright")}
_LAMP_HINTS_ON = {"hint-read": ("indirect", "i want to read so {V} {O}"), "hint-dark": ("indirect", "it's {A} {V} {O}")}
_LAMP_HINTS_OFF = {"hint-sleep": ("indirect", "i'm going to sleep {V} {O}"),
                   "hint-bright": ("indirect", "{O} is {A}")}

_HEAT_OBJECTS = ("the heat", "the heating", "the temperature", "the thermostat", "the heater")
_HEAT_NOUNS = ("heat", "heating", "temperature", "thermostat", "heater")


def _heat_group(up: bool) -> Group:
    """Heat up/down: raise/lower verbs, comparatives ("make the kitchen toastier") and hints."""
    direction = "up" if up else "down"
    frames = {
        "verb-object": ("imperative", "{V} {O}{Lo}"),
        "particle-after": ("imperative", f"{{Vp}} {{O}} {direction}{{Lo}}"),
        "modifier": ("imperative", "{V} the {M} {N}"),
        "location-first": ("reorder", f"{{L}} {{Vp}} {{O}} {direction}"),
        "location-first-verb": ("reorder", "{L} {V} {O}"),
        "make-it": ("imperative", "make it {C}{Lo}"),
        "make-room": ("imperative", "make the {M} {C}"),
        "want": ("imperative", "i'd like it {C}{Lo}"),
        "hint-cold": ("indirect", "it's {A}{Lo}"),
        "hint-feel": ("indirect", "i'm {A}{Lo}"),
        "hint-room": ("indirect", "the {M} is {A}"),
        "object-topic": ("reorder", "{O}{Lo} {Vp} it " + direction),
    }
    if up:
        words = {"V": ("turn up", "crank up", "bump up", "push up", "raise", "increase", "boost", "put up"),
                 "Vp": ("turn", "crank", "bump", "push", "put"), "O": _HEAT_OBJECTS, "N": _HEAT_NOUNS,
                 "C": ("warmer", "hotter", "toastier", "a bit warmer", "a little warmer", "nice and warm"),
                 "A": ("cold", "freezing", "chilly", "icy", "frosty", "so cold", "really cold", "shivering")}
        senses = {"V": (("increase", "verb", 2), ("raise", "verb", 1)), "A": (("cold", "adj-similar", 1),)}
    else:
        words = {"V": ("turn down", "bring down", "drop", "lower", "decrease", "reduce", "cut back", "knock down"),
                 "Vp": ("turn", "bring", "knock", "dial", "put"), "O": _HEAT_OBJECTS, "N": _HEAT_NOUNS,
                 "C": ("cooler", "colder", "a bit cooler", "less warm", "a little cooler", "less hot"),
                 "A": ("hot", "boiling", "sweltering", "stuffy", "baking", "roasting", "way too warm", "scorching")}
        senses = {"V": (("decrease", "verb", 2), ("lower", "verb", 3)), "A": (("hot", "adj-similar", 1),)}
    odd = _ODD | {"acold", "algid", "arctic", "frigid", "gelid", "glacial", "polar", "bleak", "cutting", "raw",
                  "parky", "crisp", "nipping", "nippy", "snappy", "frigorific", "frore", "rimed", "rimy", "heatless",
                  "ice-cold", "refrigerant", "refrigerating", "refrigerated", "shivery", "stone-cold", "unheated",
                  "unwarmed", "cold", "tropical", "sultry", "baking hot", "blistery", "calefacient", "warming",
                  "calefactory",
                  "calefactive", "calorifacient", "calorific", "fervent", "fervid", "fiery", "igneous", "heatable",
                  "heated", "heated up", "het", "het up", "hottish", "overheated", "red-hot", "sizzling",
                  "sulfurous", "sulphurous", "sweltry", "thermal", "torrid", "tropic", "white", "white-hot", "hot",
                  "blistering"}
    intents = _located("increase" if up else "decrease", "heat")
    return Group(f"heat_{direction}", intents, frames, words, senses, frozenset(odd))


def _volume_group(up: bool) -> Group:
    direction = "up" if up else "down"
    frames = {
        "verb-object": ("imperative", "{V} {O}"),
        "particle-after": ("imperative", f"{{Vp}} {{O}} {direction}"),
        "make-it": ("imperative", "make it {C}"),
        "make-object": ("imperative", "make {O} {C}"),
        "hint": ("indirect", "{H}"),
        "object-topic": ("reorder", f"{{O}} {{Vp}} it {direction}"),
        "want": ("imperative", "i'd like it {C}"),
        "bare": ("reorder", f"{{O}} {direction} a bit"),
    }
    objects = ("the volume", "the sound", "the audio", "the speaker volume", "the sound level")
    if up:
        words = {"V": ("turn up", "crank up", "pump up", "raise", "increase", "boost", "bump up", "put up"),
                 "Vp": ("turn", "crank", "pump", "bump"), "O": objects,
                 "C": ("louder", "a bit louder", "a little louder", "loud"),
                 "H": ("i can barely hear it", "i can't hear a thing", "it's too quiet", "it's way too soft",
                       "that's too quiet", "i can hardly hear anything", "speak up")}
        senses = {"V": (("increase", "verb", 2), ("raise", "verb", 1))}
    else:
        words = {"V": ("turn down", "bring down", "lower", "reduce", "decrease", "drop", "knock down", "tone down"),
                 "Vp": ("turn", "bring", "knock", "tone"), "O": objects,
                 "C": ("quieter", "softer", "a bit quieter", "less loud", "a little softer"),
                 "H": ("it's way too loud", "that's deafening", "it's blaring", "it's much too noisy",
                       "keep it down", "my ears hurt it's so loud", "that's far too loud")}
        senses = {"V": (("decrease", "verb", 2), ("lower", "verb", 3))}
    return Group(f"volume_{direction}", (f"{'increase' if up else 'decrease'}_volume_none",), frames, words,
                 senses, _ODD)


def _music_group(on: bool) -> Group:
    frames = {
        "verb-object": ("imperative", "{V} {O}"),
        "particle-after": ("imperative", "{Vp} {O} " + ("on" if on else "off")),
        "want": ("imperative", "i'd like " + ("some music" if on else "the music to stop")),
        "lets": ("imperative", "let's {V} {O}"),
        "hint": ("indirect", "{H}"),
        "object-topic": ("reorder", "{O} {Vp} it " + ("on" if on else "off")),
        "can-we": ("imperative", "can we {V} {O}"),
    }
    if on:
        words = {"V": ("play", "start", "put on", "turn on", "fire up", "begin", "switch on", "start up"),
                 "Vp": ("put", "turn", "switch"), "O": ("some music", "the music", "music", "a bit of music",
                                                         "some nice music", "my music"),
                 "H": ("it's too quiet in here i want music", "i'm in the mood for music", "i'd love some music",
                       "how about some music", "some background music would be nice")}
        senses = {"V": (("start", "verb", 2),)}
    else:
        words = {"V": ("stop", "pause", "end", "halt", "turn off", "switch off", "shut off", "cut", "kill"),
                 "Vp": ("turn", "switch", "shut"), "O": ("the music", "that music", "this music", "the song",
                                                          "the music now"),
                 "H": ("enough music", "i've had enough of this music", "no more music for now",
                       "the music is annoying me", "i want silence no music")}
        senses = {"V": (("stop", "verb", 2),)}
    return Group(f"music_{'on' if on else 'off'}", (f"{'activate' if on else 'deactivate'}_music_none",), frames,
                 words, senses, _ODD - {"cut"})


_BRING_OBJECTS = {
    "newspaper": ["the newspaper", "my newspaper", "today's newspaper", "the morning newspaper", "a newspaper"],
    "juice": ["some juice", "the juice", "a glass of juice", "orange juice", "a cup of juice", "my juice"],
    "socks": ["my socks", "some socks", "a pair of socks", "clean socks", "the socks", "warm socks"],
    "shoes": ["my shoes", "the shoes", "a pair of shoes", "my good shoes", "my running shoes", "some shoes"],
}
_BRING_HINTS = {"newspaper": ["i'd like to read the newspaper", "where is the newspaper",
                              "i want to read the newspaper"],
                "juice": ["i'm thirsty i'd love some juice", "i could use some juice", "is there any juice"],
                "socks": ["my feet are cold where are my socks", "i can't find my socks", "i need socks"],
                "shoes": ["i'm going out where are my shoes", "i can't find my shoes", "i need to put my shoes on"]}


def _bring_group() -> Group:
    frames = {
        "verb-object": ("imperative", "{V} me {O}"),
        "verb-object-here": ("imperative", "{V} {O} over here"),
        "give": ("imperative", "could i have {O}"),
        "hand": ("imperative", "{V} {O} to me"),
        "go-and": ("imperative", "go and {V} {O}"),
        "object-topic": ("reorder", "{O} {V} it for me"),
        "hint": ("indirect", "{H}"),
        "want": ("imperative", "i'd like {O}"),
    }
    words = {"V": ("bring", "fetch", "get", "grab", "hand", "pass", "carry", "pick up")}
    per_object = {obj: {"O": objs, "H": _BRING_HINTS[obj]} for obj, objs in _BRING_OBJECTS.items()}
    return Group("bring", tuple(f"bring_{o}_none" for o in _BRING_OBJECTS), frames, words,
                 {"V": (("bring", "verb", 4),)}, _ODD, per_object)


def _language_group() -> Group:
    frames = {
        "verb-to": ("imperative", "{V} the language to {LANG}"),
        "verb-over": ("imperative", "{V} over to {LANG}"),
        "speak": ("imperative", "speak {LANG}"),
        "talk-in": ("imperative", "talk to me in {LANG}"),
        "prefer": ("imperative", "i'd prefer {LANG}"),
        "in-lang": ("reorder", "in {LANG} please"),
        "lang-language": ("reorder", "{LANG} language"),
        "make-it": ("imperative", "make it {LANG}"),
        "set-as": ("imperative", "set {LANG} as the language"),
        "should-be": ("indirect", "the language should be {LANG}"),
        "pick-lang": ("imperative", "{P} {LANG}"),
        "from-now": ("reorder", "{LANG} from now on"),
        "everything-in": ("imperative", "i want everything in {LANG}"),
        "answer-in": ("imperative", "answer me in {LANG}"),
        "verb-to-short": ("imperative", "{V} it to {LANG}"),
        "use-the": ("imperative", "{P} the {LANG} language"),
        "none-verb": ("imperative", "{V} the language{X}"),
        "none-other": ("imperative", "pick {Y} language"),
        "none-hint": ("indirect", "{H}"),
    }
    words = {"V": ("change", "switch", "set", "modify", "alter", "update"),
             "P": ("select", "choose", "pick", "go with", "opt for", "use"),
             "X": ("", " for me", " to something else", " settings"),
             "Y": ("another", "a different", "a new", "some other"),
             "H": ("i don't understand this language", "this is the wrong language",
                   "can we use another language", "i need a different language")}
    intents = tuple(f"change language_{lang}_none" for lang in (*LANGUAGES, "none"))
    return Group("language", intents, frames, words, {"V": (("change", "verb", 1), ("change", "verb", 4))},
                 _ODD - {"shift"}, {})


GROUPS: tuple[Group, ...] = (
    _switch_group("lights_on", _located("activate", "lights"), True, _LIGHT_NOUNS, _LIGHT_OBJECTS, _LIGHT_HINTS_ON),
    _switch_group("lights_off", _located("deactivate", "lights"), False, _LIGHT_NOUNS, _LIGHT_OBJECTS,
                  _LIGHT_HINTS_OFF),
    _switch_group("lamp_on", ("activate_lamp_none",), True, _LAMP_NOUNS, _LAMP_OBJECTS, _LAMP_HINTS_ON),
    _switch_group("lamp_off", ("deactivate_lamp_none",), False, _LAMP_NOUNS, _LAMP_OBJECTS, _LAMP_HINTS_OFF),
    _heat_group(True), _heat_group(False), _volume_group(True), _volume_group(False),
    _music_group(True), _music_group(False), _bring_group(), _language_group(),
)
