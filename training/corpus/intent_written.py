"""A hand-written intent *training* family: wording the generated grammar never had.

Why: the text branch reads the hand-written validation family's reference text at 87-89% and the held-out test
family (another author) at about 85% through the served set. The misses are wording the training grammar lacks
("illuminate", "let there be light", "I need some quiet"), and no text model trained on broad language is
offline. The lever left is training text written apart from both families. These sentences were written in one
sitting (2026-12-05, twenty-third session) without reading the held-out test family; the validation family
(``training.corpus.intent_handwritten``) had been read and none of its sentences was copied. They vary the verb
(synonyms, phrasal verbs, slang), the form (requests, questions, complaints, hints, fillers) and word order.

Role: train only. :func:`family` drops any sentence that equals (after normalising) a validation or test phrasing
or a held-out one (checked by set membership; the test texts are never printed).
"""

from __future__ import annotations

from training.corpus.intent_handwritten import kept_and_dropped

SENTENCES: dict[str, tuple[str, ...]] = {
    "activate_lamp_none": (
        "switch the lamp on", "could you light the lamp", "lamp on", "i want the lamp lit",
        "power on the desk lamp", "get the lamp going please", "turn on that little lamp",
        "hit the lamp", "the lamp please", "i'd like the reading lamp on", "fire up the lamp",
        "would you turn the lamp on for me"),
    "activate_lights_bedroom": (
        "turn my bedroom light on", "bedroom lights on please", "light up my room",
        "i can't see a thing in the bedroom", "could you brighten the bedroom", "switch the bedroom lights on",
        "put some light on in the bedroom", "the bedroom is too dark", "lights on in the bedroom",
        "i need to see in the bedroom", "get the light on upstairs in my bedroom", "bedroom light please"),
    "activate_lights_kitchen": (
        "turn on the kitchen light", "lights in the kitchen please", "light up the kitchen",
        "the kitchen is too dark to cook", "can we get some light in the kitchen", "switch on the kitchen lights",
        "i need light over the stove", "kitchen light on", "make the kitchen brighter",
        "it's dark in the kitchen", "please put the kitchen lights on", "illuminate the kitchen"),
    "activate_lights_none": (
        "lights on", "turn the lights on", "switch on the lights", "it's so dark in here",
        "could you turn on the light", "i need some light", "light please", "brighten the room",
        "put the light on", "hey turn on the lights", "can't see anything get the lights", "lights please"),
    "activate_lights_washroom": (
        "bathroom light on", "turn on the bathroom lights", "switch the light on in the washroom",
        "the restroom is dark", "light up the washroom", "can you put the toilet light on",
        "i need to see in the bathroom", "lights on in the washroom please", "washroom light please",
        "could you brighten the bathroom", "turn on the lights in the loo", "the washroom needs light"),
    "activate_music_none": (
        "play some music", "music please", "play me a song", "turn on the music", "start the music",
        "i want to listen to something", "can we have some music on", "play something nice",
        "put a song on", "hit play", "some background music would be nice", "music on"),
    "bring_juice_none": (
        "get me some juice", "juice please", "i'd like a juice", "can you bring me juice",
        "pour me a glass of juice", "bring the apple juice", "i want something to drink some juice",
        "grab the juice from the fridge", "could you fetch a juice box", "a glass of juice would be great",
        "bring juice", "i could really use some juice"),
    "bring_newspaper_none": (
        "get me the newspaper", "bring the paper", "newspaper please", "can i have the morning paper",
        "fetch today's paper", "i want to read the news bring the newspaper", "grab the newspaper for me",
        "could you bring me the daily paper", "the paper please", "pass the newspaper",
        "has the paper come bring it to me", "hand over the newspaper"),
    "bring_shoes_none": (
        "get my shoes", "bring me my shoes", "shoes please", "where are my shoes can you get them",
        "fetch my sneakers", "i need my shoes", "grab my boots for me", "could you bring my shoes over",
        "hand me my shoes", "bring the shoes by the door", "i'm going out get my shoes",
        "my shoes please"),
    "bring_socks_none": (
        "get me some socks", "bring my socks", "socks please", "i need socks", "fetch a pair of socks",
        "could you grab my socks", "hand me some socks", "bring warm socks", "i'd like fresh socks",
        "can i have my socks", "pass me the socks", "my toes are freezing get some socks"),
    "change language_Chinese_none": (
        "chinese please", "change the language to chinese", "set it to chinese", "use chinese",
        "i want chinese", "switch the language to mandarin", "speak chinese", "chinese language please",
        "could you change to chinese", "make the language chinese", "let's go with chinese",
        "put it in chinese"),
    "change language_English_none": (
        "english", "change the language to english", "set it to english", "use english",
        "i want english", "speak english please", "switch back to english", "english language please",
        "could you change to english", "make it english", "i don't understand this put it in english",
        "back to english please"),
    "change language_German_none": (
        "german please", "change the language to german", "set it to german", "switch to german",
        "i want german", "speak german", "german language please", "could you change to german",
        "deutsch please", "put it in german", "let's use german", "i'd like german"),
    "change language_Korean_none": (
        "change the language to korean", "set it to korean", "switch to korean", "use korean",
        "i want korean", "speak korean", "korean language please", "could you change to korean",
        "make the language korean", "put it in korean", "let's try korean", "i'd like korean"),
    "change language_none_none": (
        "change language", "switch the language", "language settings", "i want to change the language",
        "set a different language", "can i pick another language", "change the system language",
        "this isn't my language", "let me choose a language", "another language please",
        "how do i change the language", "switch languages please"),
    "deactivate_lamp_none": (
        "turn off the lamp", "lamp off", "switch the lamp off", "shut the lamp off",
        "could you turn the lamp off", "the lamp is too bright turn it off", "power down the lamp",
        "no more lamp", "lamp off please", "put out the lamp", "turn that lamp off", "i'm done with the lamp"),
    "deactivate_lights_bedroom": (
        "turn off the bedroom light", "switch off my bedroom lights", "lights out in the bedroom",
        "turn the lights off in my room", "bedroom light off please", "could you shut off the bedroom lights",
        "no lights in the bedroom", "i want the bedroom dark", "kill the bedroom lights",
        "time for bed lights off in the bedroom", "the bedroom light is still on", "dim the bedroom completely"),
    "deactivate_lights_kitchen": (
        "turn off the kitchen lights", "kitchen light off", "switch the kitchen light off",
        "lights out in the kitchen", "shut off the kitchen lights", "could you turn off the light in the kitchen",
        "no more light in the kitchen", "the kitchen light is on for nothing", "kitchen lights off please",
        "we're done cooking turn off the kitchen light", "put out the kitchen lights", "darken the kitchen"),
    "deactivate_lights_none": (
        "turn off the lights", "switch the lights off", "lights out", "turn the light off",
        "no lights please", "could you switch off the light", "kill the lights", "shut off all the lights",
        "make it dark", "off with the lights", "the light is hurting my eyes turn it off",
        "i don't need the light"),
    "deactivate_lights_washroom": (
        "turn off the bathroom light", "bathroom lights off", "switch off the washroom lights",
        "lights out in the washroom", "shut the bathroom light off", "could you turn off the restroom light",
        "the washroom light is still on", "no light in the washroom please", "kill the bathroom light",
        "washroom lights off", "put out the light in the bathroom", "turn the toilet light off"),
    "deactivate_music_none": (
        "turn off the music", "music off", "stop playing", "pause the music", "no more music",
        "silence please", "switch off the music", "kill the music", "could you stop the song",
        "that's enough music", "shut the music off", "end the music"),
    "decrease_heat_bedroom": (
        "turn down the bedroom heat", "the bedroom is too warm", "make my room cooler",
        "lower the heat in the bedroom", "less heat in my bedroom", "cool off the bedroom",
        "decrease the bedroom temperature", "it's stuffy in the bedroom", "could you turn the bedroom heater down",
        "bedroom heat down please", "reduce the heating in the bedroom", "i'm sweating in my bedroom"),
    "decrease_heat_kitchen": (
        "turn down the kitchen heat", "the kitchen is too warm", "lower the kitchen temperature",
        "cool off the kitchen", "less heating in the kitchen", "decrease the heat in the kitchen",
        "it's sweltering in the kitchen", "could you turn the kitchen heater down", "kitchen heat down please",
        "reduce the kitchen heating", "the kitchen is way too hot", "bring the kitchen temperature down"),
    "decrease_heat_none": (
        "turn down the heat", "it's too hot", "lower the heat", "decrease the temperature", "less heat please",
        "cool it down", "i'm too warm", "reduce the heating", "could you make it cooler",
        "it's roasting in here", "heat down", "bring the temperature down"),
    "decrease_heat_washroom": (
        "turn down the bathroom heat", "the bathroom is too warm", "lower the washroom heat",
        "cool off the washroom", "less heat in the bathroom", "decrease the washroom heating",
        "it's steamy and hot in the bathroom", "could you turn the bathroom heater down",
        "washroom heat down please", "reduce the temperature in the bathroom", "the restroom is too hot",
        "make the washroom cooler"),
    "decrease_volume_none": (
        "turn it down", "volume down", "lower the volume", "quieter", "turn the volume down",
        "too loud", "could you make it quieter", "reduce the volume", "softer please",
        "bring the volume down a notch", "it's hurting my ears turn it down", "decrease the sound"),
    "increase_heat_bedroom": (
        "turn up the bedroom heat", "the bedroom is too cold", "make my room warmer",
        "raise the heat in the bedroom", "more heat in my bedroom", "warm the bedroom",
        "increase the bedroom temperature", "it's chilly in the bedroom", "could you turn the bedroom heater up",
        "bedroom heat up please", "heat the bedroom", "i'm shivering in my bedroom"),
    "increase_heat_kitchen": (
        "turn up the kitchen heat", "the kitchen is too cold", "raise the kitchen temperature",
        "warm the kitchen", "more heating in the kitchen", "increase the heat in the kitchen",
        "it's freezing in the kitchen", "could you turn the kitchen heater up", "kitchen heat up please",
        "heat the kitchen up", "the kitchen is chilly", "make the kitchen warmer"),
    "increase_heat_none": (
        "turn up the heat", "it's too cold", "raise the heat", "increase the temperature", "more heat please",
        "warm it up", "i'm freezing", "heat up", "could you make it warmer", "it's chilly in here",
        "crank up the heating", "bring the temperature up"),
    "increase_heat_washroom": (
        "turn up the bathroom heat", "the bathroom is too cold", "raise the washroom heat",
        "warm the washroom", "more heat in the bathroom", "increase the washroom temperature",
        "it's freezing in the bathroom", "could you turn the bathroom heater up", "washroom heat up please",
        "heat the bathroom", "the restroom is cold", "make the washroom warmer"),
    "increase_volume_none": (
        "turn it up", "volume up", "louder", "raise the volume", "turn up the volume", "i can't hear",
        "could you make it louder", "increase the volume", "crank it up", "bring the volume up a notch",
        "make it louder please", "up the sound"),
}


def family(excluded: set[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """This family's sentences less those in ``excluded``, and the dropped texts."""
    return kept_and_dropped(SENTENCES, excluded)
