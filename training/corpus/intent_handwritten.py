"""A second intent validation family, written by hand apart from the generated paraphrase grammar.

Why: the served intent set scores 96% on the paraphrase family's held-out templates (validation) and 85% on the
held-out test family, written by someone else. A validation family from the same grammar as training does not
predict how the set does on another author's wording, so choices made on it cannot be trusted for that. These
sentences were written in one sitting (2026-12-05) without reading the test family or the paraphrase grammar's
frames: requests, complaints, questions and hints as a person might say them, four per intent, with some
synonyms the corpus never uses ("bathroom" for the washroom, "tunes", "mandarin").

Role: valid only. :func:`family` drops any sentence that equals (after normalising) a training phrasing of the
corpus or of the paraphrase family, or a held-out test phrasing (checked by set membership; the test texts are
never printed), and says how many it dropped.
"""

from __future__ import annotations

from training.data.manifest import normalize_text as normalised  # what a phrasing is compared as

SENTENCES: dict[str, tuple[str, ...]] = {
    "activate_lamp_none": ("can i get some light from the lamp", "the lamp should be on now",
                           "flick the lamp on for me", "would you mind powering up the lamp"),
    "activate_lights_bedroom": ("it's pitch black in my bedroom", "illuminate the bedroom",
                                "get the bedroom lights going", "i'd love some light in the bedroom right now"),
    "activate_lights_kitchen": ("kitchen lights on please", "brighten up the kitchen",
                                "can you get the lights working in the kitchen", "put the kitchen lighting on"),
    "activate_lights_none": ("let there be light", "i can barely see put the lights on",
                             "could we have the lights on", "get some lights on in here"),
    "activate_lights_washroom": ("turn the washroom light on when you get a chance",
                                 "switch on the light in the bathroom", "washroom lights on",
                                 "i need light in the washroom"),
    "activate_music_none": ("put on some tunes", "i'm in the mood for some music", "start playing something",
                            "let's hear some music"),
    "bring_juice_none": ("i'm thirsty grab me a juice", "fetch me some juice", "could i have a glass of juice",
                         "bring over the orange juice"),
    "bring_newspaper_none": ("i'd like to read the paper", "hand me today's newspaper",
                             "go and fetch the newspaper for me", "where's my paper bring it here"),
    "bring_shoes_none": ("i need my shoes before i head out", "pass me my shoes", "fetch my shoes please",
                         "can you get me a pair of shoes"),
    "bring_socks_none": ("my feet are cold bring me socks", "grab a pair of socks for me",
                         "i could use some clean socks", "fetch the socks from the drawer"),
    "change language_Chinese_none": ("switch to chinese", "i'd prefer the chinese language",
                                     "set everything to chinese please", "can we use mandarin chinese instead"),
    "change language_English_none": ("go back to english", "english please", "i want the settings in english",
                                     "switch the language over to english"),
    "change language_German_none": ("make it german", "use german from now on", "can you speak german",
                                    "set the language to german please"),
    "change language_Korean_none": ("korean please", "switch over to korean", "i would like everything in korean",
                                    "let's change it to korean"),
    "change language_none_none": ("change the language", "i want a different language", "can you switch languages",
                                  "use another language please"),
    "deactivate_lamp_none": ("the lamp can go off now", "switch that lamp off", "kill the lamp",
                             "i don't need the lamp anymore"),
    "deactivate_lights_bedroom": ("bedroom lights off", "darken the bedroom", "shut off the lights in my bedroom",
                                  "i'm going to sleep turn the bedroom lights off"),
    "deactivate_lights_kitchen": ("no need for the kitchen lights now", "switch off the kitchen light",
                                  "kill the lights in the kitchen", "can you turn the kitchen lights off"),
    "deactivate_lights_none": ("lights off", "it's too bright turn off the lights", "shut the lights",
                               "cut the lights please"),
    "deactivate_lights_washroom": ("turn off the light in the washroom", "washroom light off please",
                                   "someone left the bathroom light on switch it off", "shut the washroom lights"),
    "deactivate_music_none": ("stop the music", "enough music for now", "turn the music off please",
                              "i need some quiet stop playing"),
    "decrease_heat_bedroom": ("it's too hot in the bedroom", "cool down the bedroom a bit",
                              "turn the heat down in my bedroom", "lower the bedroom temperature"),
    "decrease_heat_kitchen": ("the kitchen is boiling turn the heating down", "make the kitchen cooler",
                              "reduce the heat in the kitchen", "less heat in the kitchen please"),
    "decrease_heat_none": ("it's too warm in here", "turn down the heating", "can you cool things down",
                           "lower the temperature a little"),
    "decrease_heat_washroom": ("the washroom is too hot", "turn down the washroom heater", "cool the bathroom down",
                               "reduce the washroom temperature"),
    "decrease_volume_none": ("that's too loud", "turn the sound down a bit", "lower the volume please",
                             "quieter please"),
    "increase_heat_bedroom": ("it's freezing in my bedroom", "warm up the bedroom", "turn up the heat in the bedroom",
                              "make the bedroom a bit warmer"),
    "increase_heat_kitchen": ("the kitchen is cold turn the heating up", "heat up the kitchen",
                              "raise the temperature in the kitchen", "more heat in the kitchen please"),
    "increase_heat_none": ("i'm cold", "turn up the heating", "can you make it warmer in here",
                           "raise the temperature a few degrees"),
    "increase_heat_washroom": ("the washroom is chilly", "warm up the bathroom before my shower",
                               "turn the washroom heat up", "more heat in the washroom"),
    "increase_volume_none": ("i can't hear it turn it up", "louder please", "pump up the volume",
                             "raise the volume a little"),
}


def kept_and_dropped(sentences: dict[str, tuple[str, ...]], excluded: set[str]
                     ) -> tuple[list[tuple[str, str]], list[str]]:
    """``(text, intent)`` of every sentence whose normalised text is not in ``excluded``, and the dropped texts."""
    kept: list[tuple[str, str]] = []
    dropped: list[str] = []
    for intent, texts in sentences.items():
        for text in texts:
            if normalised(text) in excluded:
                dropped.append(text)
            else:
                kept.append((text, intent))
    return kept, dropped


def family(excluded: set[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """This family's sentences less those in ``excluded`` (:func:`kept_and_dropped`)."""
    return kept_and_dropped(SENTENCES, excluded)
