"""The intent paraphrase family: seeded, held out by template, slots kept, corpus test phrasings avoided."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from training.corpus import wordnet
from training.corpus.paraphrase import core, family_digest, held_out, paraphrase_family, protected_cores
from training.corpus.paraphrase_audio import plan_clips, render
from training.corpus.plan import SCALES, make_speakers
from training.corpus.synth import missing_synthesisers
from training.corpus.text import LANGUAGES, LOCATIONS, intent_phrasings

needs_wordnet = pytest.mark.skipif(not wordnet.available(), reason="wordnet-base not installed")


@pytest.fixture(scope="module")
def family():
    return paraphrase_family(0, {"train": 40, "valid": 6})


def test_the_same_seed_gives_the_same_sentences_and_another_seed_others(family):
    assert family_digest(paraphrase_family(0, {"train": 40, "valid": 6})) == family_digest(family)
    assert family_digest(paraphrase_family(1, {"train": 40, "valid": 6})) != family_digest(family)


def test_every_intent_gets_its_count_of_distinct_sentences(family):
    intents = set(intent_phrasings())
    for split, count in (("train", 40), ("valid", 6)):
        per_intent = Counter(p.intent for p in family[split])
        assert set(per_intent) == intents
        assert set(per_intent.values()) == {count}
    assert len({p.text for p in family["train"]} & {p.text for p in family["valid"]}) == 0


def test_validation_is_held_out_by_template_not_by_sentence(family):
    held = held_out(0)
    assert held.frames and held.verbs and held.fillers
    for p in family["train"]:
        assert p.frame not in held.frames
        assert f"{p.group}/{p.verb}" not in held.verbs
        assert not set(p.filler.split("|")) & held.fillers
    for p in family["valid"]:
        assert p.frame in held.frames or f"{p.group}/{p.verb}" in held.verbs
    # a held-out frame never reaches training under another intent of its group either
    assert not {p.frame for p in family["train"]} & {p.frame for p in family["valid"] if p.frame in held.frames}


def test_slot_words_stay_in_every_sentence(family):
    for p in (*family["train"], *family["valid"]):
        action, obj, location = p.intent.split("_")
        words = set(p.text.split())
        spoken = [loc for loc in LOCATIONS if loc in words]
        assert spoken == ([] if location == "none" else [location]), p
        if action == "bring":
            assert obj in words, p
        if action == "change language":
            assert [lang.lower() for lang in LANGUAGES if lang.lower() in words] == \
                ([] if obj == "none" else [obj.lower()]), p
        if obj == "lamp":
            assert "lamp" in words and "lights" not in words, p


def test_no_sentence_is_a_corpus_valid_or_test_phrasing_with_fillers_around_it(family):
    protected = protected_cores(0)
    assert core("um could you please turn on the lights thanks") == "turn on the lights"
    assert all(core(p.text) not in protected for p in (*family["train"], *family["valid"]))


def test_fillers_and_other_wordings_occur(family):
    texts = [p.text for p in family["train"]]
    assert sum(p.filler != "|" for p in family["train"]) > len(texts) / 2
    assert {p.family for p in family["train"]} == {"imperative", "reorder", "indirect"}
    assert any(t.startswith("in the kitchen ") for t in texts)


@needs_wordnet
def test_wordnet_gives_the_sense_asked_for_and_similar_adjectives():
    assert set(wordnet.synonyms("turn_on", "verb", 1)) == {"switch on", "turn on"}
    assert "fetch" in wordnet.synonyms("bring", "verb", 4)
    assert wordnet.synonyms("turn_on", "verb", 99) == []
    assert {"chilly", "icy"} <= set(wordnet.similar_adjectives("cold", 1))


def test_clips_are_spoken_by_training_and_validation_voices_only(family):
    speakers = make_speakers(0, SCALES["tiny"])
    clips = plan_clips(family, speakers, 0)
    assert {c.speaker.split for c in clips if c.split == "train"} == {"train"}
    assert {c.speaker.split for c in clips if c.split == "valid"} == {"valid"}
    assert len({c.id for c in clips}) == len(clips) == len(family["train"]) + len(family["valid"])


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_synthesisers()), reason="synthesiser binaries missing")
def test_render_writes_a_corpus_schema_intent_manifest(tmp_path):
    from training.data.manifest import read_manifest

    summary = render(tmp_path, 0, "tiny", workers=1, per_intent={"train": 1, "valid": 1}, log=lambda _: None)
    rows = read_manifest(tmp_path / "intent.jsonl", check_exists=True)
    assert Counter(r.split for r in rows) == {"train": 31, "valid": 31}
    assert {r.label for r in rows} == set(intent_phrasings())
    assert all(r.meta["paraphrase"]["frame"] and r.duration_s >= 1.0 for r in rows)
    assert summary["counts"] == {"train": 31, "valid": 31}
    assert json.loads((tmp_path / "paraphrase.json").read_text())["family_sha256"] == summary["family_sha256"]


def test_subset_keeps_every_intent_and_points_at_the_rendered_audio(tmp_path):
    from training.corpus.paraphrase_audio import subset

    source = tmp_path / "family"
    source.mkdir()
    rows = [{"id": f"para-{split}-{i}", "path": f"audio/{split}/para-{split}-{i}.flac", "split": split,
             "label": ("a", "b")[i % 2], "text": f"t{i}"}
            for split, n in (("train", 10), ("valid", 4)) for i in range(n)]
    (source / "intent.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    counts = subset(source, tmp_path / "small", {"train": 3, "valid": 1})
    assert counts == {"train": 6, "valid": 2}
    kept = [json.loads(line) for line in (tmp_path / "small" / "intent.jsonl").read_text().splitlines()]
    assert {r["label"] for r in kept if r["split"] == "valid"} == {"a", "b"}
    assert all(r["path"].startswith("../family/audio/") for r in kept)
    # every 2nd clip first: the subset spreads over the (text-sorted) family instead of taking its head
    assert [r["id"] for r in kept if r["label"] == "a" and r["split"] == "train"] == \
        ["para-train-0", "para-train-4", "para-train-8"]
