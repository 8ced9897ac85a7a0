"""Tiny-scale checks of the synthetic corpus: determinism, held-out splits, balance, schema."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from training.corpus.plan import EMOTIONS, SCALES, make_plan
from training.corpus.synth import missing_synthesisers
from training.corpus.text import WORDNET_DIR, normalise, spell_number, split_phrasings

MISSING = missing_synthesisers()
needs_synth = pytest.mark.skipif(bool(MISSING), reason=f"synthesiser binaries missing: {MISSING} "
                                 "(apt-get install espeak-ng flite festival festvox-kallpc16k "
                                 "festvox-kdlpc16k festvox-us-slt-hts)")
TASKS = ("asr", "verification", "emotion", "intent")
KEYS = {"id", "path", "duration_s", "split", "task", "speaker", "text", "label", "meta"}


def _audio_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.glob("audio/**/*.flac"))}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if MISSING:
        pytest.skip(f"synthesiser binaries missing: {MISSING}")
    from training.corpus.generate import generate

    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    generate(a, seed=0, scale="tiny", workers=2, log=lambda m: None)
    generate(b, seed=0, scale="tiny", workers=1, log=lambda m: None)  # other scheduling
    return a, b


def _read(root: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (root / f"{task}.jsonl").read_text().splitlines()]


def test_normalise_to_ctc_vocabulary() -> None:
    assert spell_number(3500) == "three thousand five hundred"
    assert normalise("In 1984, I had 3,500 dollars & it's 20%!") == \
        "in nineteen eighty four i had three thousand five hundred dollars and it's twenty percent"
    assert set(normalise("Héllo -- 'quoted' World's end?")) <= set("abcdefghijklmnopqrstuvwxyz' ")


def test_held_out_phrasings_and_sentences() -> None:
    for intent, parts in split_phrasings(0).items():
        assert "_" not in intent.split("_", 2)[2] and intent.count("_") == 2
        assert not set(parts["test"]) & set(parts["train"]), intent
        assert not set(parts["valid"]) & set(parts["train"]), intent
    speakers, clips, _ = make_plan(0, "small")
    train_text = {c.text for c in clips if c.split == "train"}
    assert not any(c.text in train_text for c in clips if c.split in ("valid", "test"))


def test_plan_speakers_disjoint_and_all_synths() -> None:
    speakers, _, _ = make_plan(0, "small")
    for split in ("train", "valid", "test"):
        assert {s.synth for s in speakers if s.split == split} == {"espeak", "flite", "festival"}
    assert len({s.id for s in speakers}) == len(speakers)


@pytest.mark.slow  # synthesises a corpus twice (9 s)
@needs_synth
def test_deterministic(corpora: tuple[Path, Path]) -> None:
    a, b = corpora
    ja, jb = json.loads((a / "corpus.json").read_text()), json.loads((b / "corpus.json").read_text())
    assert ja["manifest_sha256"] == jb["manifest_sha256"]
    assert ja["audio_sha256"] == jb["audio_sha256"]
    assert _audio_hashes(a) == _audio_hashes(b)


@needs_synth
def test_schema(corpora: tuple[Path, Path]) -> None:
    root = corpora[0]
    for task in TASKS:
        rows = _read(root, task)
        assert rows, task
        assert len({r["id"] for r in rows}) == len(rows)
        for r in rows:
            assert set(r) == KEYS and r["task"] == task and r["split"] in ("train", "valid", "test")
            assert isinstance(r["duration_s"], float) and 1.0 <= r["duration_s"] <= 8.0
            assert (root / r["path"]).is_file() and not Path(r["path"]).is_absolute()
            assert isinstance(r["text"], str) and set(r["text"]) <= set("abcdefghijklmnopqrstuvwxyz' ")
            assert isinstance(r["meta"], dict) and {"synth", "voice", "snr_db"} <= set(r["meta"])
            if task == "asr":
                assert r["label"] is None
            elif task == "verification":
                assert r["label"] == r["speaker"]
            elif task == "emotion":
                assert r["label"] in EMOTIONS
            else:
                assert r["label"].count("_") == 2
    summary = json.loads((root / "corpus.json").read_text())
    for key in ("seed", "scale", "counts", "speakers", "total_hours", "generator_version", "manifest_sha256"):
        assert key in summary


@needs_synth
def test_verification_speaker_disjoint_and_trials(corpora: tuple[Path, Path]) -> None:
    root = corpora[0]
    rows = _read(root, "verification")
    spk = {s: {r["speaker"] for r in rows if r["split"] == s} for s in ("train", "valid", "test")}
    assert not spk["train"] & spk["test"] and not spk["train"] & spk["valid"]
    assert not spk["valid"] & spk["test"]
    for split in ("test", "valid"):
        path_spk = {r["path"]: r["speaker"] for r in rows if r["split"] == split}
        lines = (root / f"verification_trials_{split}.txt").read_text().split("\n")[:-1]
        labels = Counter()
        for line in lines:
            lab, pa, pb = line.split(" ")
            assert pa in path_spk and pb in path_spk and (root / pa).is_file() and pa != pb
            assert int(lab) == int(path_spk[pa] == path_spk[pb])
            labels[lab] += 1
        assert abs(labels["1"] - labels["0"]) <= 1


@needs_synth
def test_label_balance_and_held_out(corpora: tuple[Path, Path]) -> None:
    root = corpora[0]
    emo = _read(root, "emotion")
    for split in ("train", "valid", "test"):
        counts = Counter(r["label"] for r in emo if r["split"] == split)
        assert set(counts) == set(EMOTIONS) and len(set(counts.values())) == 1
    # same sentence and speaker across the four classes of a group
    groups: dict[str, set] = {}
    for r in emo:
        groups.setdefault(r["id"].rsplit("-", 1)[0], set()).add((r["speaker"], r["text"]))
    assert all(len(v) == 1 for v in groups.values())
    intent = _read(root, "intent")
    for split in ("train", "valid", "test"):
        per_intent = Counter(r["label"] for r in intent if r["split"] == split)
        assert max(per_intent.values()) - min(per_intent.values()) <= 1
    train_text = {r["text"] for r in intent if r["split"] == "train"}
    train_spk = {r["speaker"] for r in intent if r["split"] == "train"}
    for r in intent:
        if r["split"] == "test":
            assert r["text"] not in train_text and r["speaker"] not in train_spk
    asr = _read(root, "asr")
    asr_train = {r["text"] for r in asr if r["split"] == "train"}
    assert not any(r["text"] in asr_train for r in asr if r["split"] == "test")


def test_full_plus_is_full_with_extra_training_asr_only() -> None:
    """The larger scale keeps every clip of "full" as it was (so held-out results stay comparable)
    and adds only training ASR clips of unused sentences by training speakers."""
    _, full, full_info = make_plan(0, "full")
    _, plus, plus_info = make_plan(0, "full-plus")
    before = {c.id: (c.split, c.text, c.speaker.id, c.seed) for c in full}
    after = {c.id: (c.split, c.text, c.speaker.id, c.seed) for c in plus}
    assert {k: after[k] for k in before} == before
    assert full_info["babble_sentences"] == plus_info["babble_sentences"]
    extra = [c for c in plus if c.id not in before]
    assert len(extra) > 2000
    assert {(c.split, c.speaker.split, c.source) for c in extra} == {("train", "train", "asr")}
    held_out = {c.text for c in full if c.split != "train"} | set(full_info["babble_sentences"])
    assert not held_out & {c.text for c in extra}
    assert len({c.text for c in extra}) * 2 == len(extra)  # each new sentence by two voices


@pytest.mark.slow  # reads WordNet (8 s)
@pytest.mark.skipif(not (WORDNET_DIR / "data.noun").is_file(), reason="wordnet-base not installed")
def test_full_wide_adds_wordnet_sentences_for_training_only() -> None:
    """ "full-wide" keeps every clip of "full-plus" and adds WordNet usage examples, one training
    speaker each; none of them is a pool sentence, so valid and test are untouched and unseen."""
    _, plus, plus_info = make_plan(0, "full-plus")
    _, wide, wide_info = make_plan(0, "full-wide")
    before = {c.id: (c.split, c.text, c.speaker.id, c.seed) for c in plus}
    after = {c.id: (c.split, c.text, c.speaker.id, c.seed) for c in wide}
    assert {k: after[k] for k in before} == before
    extra = [c for c in wide if c.id not in before]
    assert len(extra) == SCALES["full-wide"]["asr_wordnet"] == wide_info["sentence_pool"]["wordnet_sentences"]
    assert {(c.split, c.speaker.split, c.source) for c in extra} == {("train", "train", "asr")}
    assert len({c.text for c in extra}) == len(extra)
    assert not {c.text for c in plus} & {c.text for c in extra}
    assert all(set(c.text) <= set("abcdefghijklmnopqrstuvwxyz' ") and 5 <= len(c.text.split()) <= 14 for c in extra)
    _, again, again_info = make_plan(0, "full-wide")  # seeded: the same sentences, voices and clip seeds
    assert [(c.id, c.text, c.speaker.id, c.seed) for c in again] == [(c.id, c.text, c.speaker.id, c.seed) for c in wide]
    assert again_info == wide_info and plus_info["sentence_pool"]["pool_sha256"] == \
        wide_info["sentence_pool"]["pool_sha256"]


def test_wordnet_examples_are_read_from_the_glosses_and_normalised(tmp_path, monkeypatch) -> None:
    from training.corpus import text

    (tmp_path / "data.noun").write_text(
        "  1 This software and database is being provided to you, the LICENSEE\n"
        '00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which exists; "the 3 dogs barked at the mailman"; '
        '"NASA sent it up"; "too short"\n'
        '00002137 03 n 01 thing 0 000 | a separate entity; "she bought a thing-of-beauty for her mother\'s house"\n')
    monkeypatch.setattr(text, "WORDNET_DIR", tmp_path)
    assert text.wordnet_sentences() == ["she bought a thing of beauty for her mother's house",
                                        "the three dogs barked at the mailman"]
    monkeypatch.setattr(text, "WORDNET_DIR", tmp_path / "absent")
    assert text.wordnet_sentences() == []
    with pytest.raises(ValueError, match="wordnet-base"):
        make_plan(0, "full-wide")


def test_lm_text_holds_every_length_of_the_sources_but_not_the_spoken_transcripts(tmp_path, monkeypatch) -> None:
    from training.corpus import text

    (tmp_path / "data.noun").write_text(
        '00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which exists; "the 3 dogs barked at the mailman"; '
        '"too short"; "she sang"\n')
    monkeypatch.setattr(text, "WORDNET_DIR", tmp_path)
    monkeypatch.setattr(text, "FORTUNES_DIR", tmp_path / "no-fortunes")
    # the clips' filter wants 5-14 words; the LM text keeps the two-word examples too
    assert text.lm_text_sentences() == ["she sang", "the three dogs barked at the mailman", "too short"]
    assert text.lm_text_sentences(spoken=["she sang"]) == ["the three dogs barked at the mailman", "too short"]


def test_a_full_corpus_without_the_fortune_files_says_which_package_is_missing(tmp_path, monkeypatch) -> None:
    """A newcomer without Debian's fortunes gets the package to install, not only "pool too small"."""
    import training.corpus.text as text

    monkeypatch.setattr(text, "FORTUNES_DIR", tmp_path)  # no fortune file there
    with pytest.raises(ValueError, match="apt-get install fortunes fortunes-min"):
        make_plan(0, "full")


def test_a_text_manifest_holds_the_plan_s_training_text_beside_the_corpus_held_out_rows(corpora, tmp_path) -> None:
    """``training.corpus.text_manifest``: what elp-add-lm reads to build an LM from a larger scale's transcripts."""
    from training.corpus.text_manifest import main
    from training.data.manifest import filter_split, read_manifest

    generated, _ = corpora
    assert main(["--scale", "tiny", "--seed", "0", "--corpus", str(generated), "--out", str(tmp_path / "text")]) == 0
    rows, own = read_manifest(tmp_path / "text" / "asr.jsonl"), read_manifest(generated / "asr.jsonl")
    for split in ("valid", "test"):  # the generated rows themselves, with their audio
        assert filter_split(rows, split) == filter_split(own, split)
    assert sorted(r.text for r in filter_split(rows, "train")) == sorted(r.text for r in filter_split(own, "train"))
    with pytest.raises(SystemExit, match="not generated from this plan"):
        main(["--scale", "tiny", "--seed", "1", "--corpus", str(generated), "--out", str(tmp_path / "other")])
