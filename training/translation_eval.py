"""Translation quality on real parallel speech, offline: a translation set (``translate-whisper``) against the English
text of the same prompts, and, on a subset, full Whisper's own ``generate(task="translate")``.

Why these clips: asterisk's core prompt packages hold the same prompt file names read by real people in several
languages (June, fr_CA; Carlo, it_IT; Allison, es_MX; IvrvoiceRU, ru_RU: the voices of the human suite,
``training.suites.registry``), and ``asterisk-core-sounds-en`` ships the English transcripts of those names
(``core-sounds-en.txt.gz``). A localised prompt says what the English one says, so that transcript is its reference
translation (one reference, written for the English recording: a free translation scores lower than a literal one,
and some prompts were localised loosely). Nothing here was tuned on these clips.

    python -m training.translation_eval --set adapters_store/translate-whisper --backbone models/whisper-base \\
        --per-language 100 --generate 25 --out docs/results/translation

Per language: sacrebleu's corpus chrF and BLEU (default settings; their signatures are written with the figures) and
language-detection accuracy (the language the set detected vs the package's). ``--band wide`` (default) reads the
16 kHz G.722 packages, ``phone`` the 8 kHz WAV ones. Writes ``translation.json`` (figures, command, packages) and a
JSONL per system (each clip's reference, translation and detected language).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.corpus.generate import seeded_order
from training.suites import registry
from training.suites.debian import DEFAULT_DEB_CACHE, SAMPLE_RATE, deb_version, decode_file, extract_deb, fetch_deb
from training.suites.human import TRANSCRIPTS

LANGUAGES = ("fr", "it", "es", "ru")
#: band -> the packages' codec (file extension and package suffix)
BANDS = {"wide": "g722", "phone": "wav"}
#: references of fewer words ("Goodbye.", single digits, spelt letters "N B S") make BLEU a coin toss: left out
MIN_REFERENCE_WORDS = 3
_WORD = re.compile(r"[^\W\d_]{2,}")  # two letters or more
MIN_SECONDS, MAX_SECONDS = 0.3, 30.0  # the server's limits on one clip
_NOTES = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")


@dataclass(frozen=True)
class ParallelClip:
    """One localised prompt: its language, prompt name, 16 kHz samples and the English reference."""

    language: str
    key: str
    wave: np.ndarray
    reference: str


@dataclass(frozen=True)
class Translation:
    text: str
    language: str | None


def english_references(transcripts_root: Path) -> dict[str, str]:
    """Prompt name ("vm-intro") -> its English text, notes in brackets dropped ("[ascending tones]"), only those with
    at least :data:`MIN_REFERENCE_WORDS` words of two letters or more."""
    references: dict[str, str] = {}
    for line in gzip.decompress((transcripts_root / TRANSCRIPTS).read_bytes()).decode("utf-8").splitlines():
        if line.startswith(";") or ":" not in line:
            continue
        key, raw = line.split(":", 1)
        text = " ".join(_NOTES.sub(" ", raw).split())
        if len(_WORD.findall(text)) >= MIN_REFERENCE_WORDS:
            references[key.strip()] = text
    return references


def voice_folder(language: str) -> str:
    """The prompt voice's folder in the language's core-sounds packages (the human suite's table)."""
    package = f"asterisk-core-sounds-{language}-wav"
    return next(source.folder for source in registry.HUMAN_SOURCES if source.package == package)


def parallel_clips(root: Path, language: str, extension: str, references: dict[str, str], count: int,
                   seed: int) -> list[ParallelClip]:
    """Up to ``count`` seeded prompts of the language that have an English reference and fit one clip, in their
    drawing order."""
    folder = root / voice_folder(language)
    files = {path.relative_to(folder).with_suffix("").as_posix(): path
             for path in sorted(folder.rglob(f"*.{extension}"))}
    keys = sorted(set(files) & set(references))
    clips: list[ParallelClip] = []
    for key in seeded_order(keys, seed, f"translation-{language}"):
        if len(clips) >= count:
            break
        wave = decode_file(files[key])
        if MIN_SECONDS <= len(wave) / SAMPLE_RATE <= MAX_SECONDS:
            clips.append(ParallelClip(language, key, wave, references[key]))
    return clips


def served_translator(set_dir: Path, backbone_dir: Path, batch_size: int) -> Callable[[Sequence[np.ndarray]],
                                                                                      list[Translation]]:
    """The set as the server runs it (float32 backbone, batches of similar length, the silence gate)."""
    from elp import AdapterSet, MultiAdapterModel, load_backbone
    from training.evaluation import predict_waveforms

    model = MultiAdapterModel(load_backbone(str(backbone_dir)))
    model.add_adapter_set("translate", AdapterSet.load(set_dir))

    def translate(waves: Sequence[np.ndarray]) -> list[Translation]:
        predictions = predict_waveforms(model, "translate", waves, batch_size)
        return [Translation(p.text or "", p.label) for p in predictions]

    return translate


def generate_translator(whisper_dir: Path) -> Callable[[Sequence[np.ndarray]], list[Translation]]:
    """Full Whisper's ``generate(task="translate")``, language detected by it, greedy, each clip padded to 30 s."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(str(whisper_dir))
    whisper = WhisperForConditionalGeneration.from_pretrained(str(whisper_dir)).eval()

    @torch.inference_mode()
    def one(wave: np.ndarray) -> Translation:
        """``generate``'s own detection (``detect_language``, which it runs when no language is given) on the same
        encoder pass, then its translation in that language."""
        features = processor(wave, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        encoded = whisper.model.encoder(features)
        token = processor.tokenizer.convert_ids_to_tokens(int(whisper.detect_language(encoder_outputs=encoded)[0]))
        ids = whisper.generate(encoder_outputs=encoded, task="translate", language=token)[0].tolist()
        return Translation(processor.decode(ids, skip_special_tokens=True).strip(), token.strip("<|>"))

    return lambda waves: [one(wave) for wave in waves]


def scores(clips: Sequence[ParallelClip], outputs: Sequence[Translation]) -> dict:
    """chrF, BLEU and language-detection accuracy of ``outputs`` (sacrebleu, corpus level)."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    hypotheses, references = [o.text for o in outputs], [[c.reference for c in clips]]
    return {"clips": len(clips), "chrf": round(chrf.corpus_score(hypotheses, references).score, 1),
            "bleu": round(bleu.corpus_score(hypotheses, references).score, 1),
            "language_accuracy": round(sum(o.language == c.language for c, o in zip(clips, outputs, strict=True))
                                       / max(len(clips), 1), 3),
            "detected": dict(Counter(o.language or "none" for o in outputs).most_common(5)),
            "signatures": {"chrf": str(chrf.get_signature()), "bleu": str(bleu.get_signature())}}


Outputs = dict[str, list[Translation]]  # language -> each clip's translation


def translate_all(translate: Callable[[Sequence[np.ndarray]], list[Translation]],
                  clips_by_language: dict[str, list[ParallelClip]]) -> tuple[Outputs, float]:
    """Each language's translations, and the seconds of compute per clip."""
    started = time.perf_counter()
    outputs = {language: translate([clip.wave for clip in clips]) for language, clips in clips_by_language.items()}
    count = sum(len(clips) for clips in clips_by_language.values())
    return outputs, round((time.perf_counter() - started) / max(count, 1), 3)


def report(name: str, clips_by_language: dict[str, list[ParallelClip]], outputs: Outputs, out: Path | None) -> dict:
    """Per-language and pooled figures of one system (the first outputs of each language, when there are more);
    its clips' outputs to ``<out>/<name>.jsonl`` unless ``out`` is None."""
    results: dict = {}
    pairs = [(clip, output) for language, clips in clips_by_language.items()
             for clip, output in zip(clips, outputs[language][: len(clips)], strict=True)]
    for language in clips_by_language:
        chosen = [(c, o) for c, o in pairs if c.language == language]
        results[language] = scores([c for c, _ in chosen], [o for _, o in chosen])
    results["all"] = scores([c for c, _ in pairs], [o for _, o in pairs])
    if out is not None:
        lines = [json.dumps({"language": c.language, "prompt": c.key, "reference": c.reference, "text": o.text,
                             "detected": o.language}, ensure_ascii=False) for c, o in pairs]
        (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return results


def table(systems: dict[str, dict]) -> str:
    """A markdown table: chrF / BLEU / language accuracy per language and system."""
    rows = ["| system | language | clips | chrF | BLEU | language detected right |", "|---|---|---:|---:|---:|---:|"]
    for name, results in systems.items():
        rows += [f"| {name} | {language} | {r['clips']} | {r['chrf']} | {r['bleu']} | "
                 f"{100 * r['language_accuracy']:.0f}% |" for language, r in results.items()
                 if isinstance(r, dict) and "chrf" in r]
    return "\n".join(rows)


def load_clips(deb_cache: Path, band: str, per_language: int, seed: int) -> tuple[dict, dict[str, str]]:
    """The seeded clips per language, and the packages read (name -> version)."""
    extension = BANDS[band]
    packages = [registry.ALLISON_TRANSCRIPT_PACKAGE, *(f"asterisk-core-sounds-{x}-{extension}" for x in LANGUAGES)]
    roots, versions = {}, {}
    for package in packages:
        deb = fetch_deb(deb_cache, package)
        roots[package], versions[package] = extract_deb(deb, deb_cache / "x"), deb_version(deb)
    references = english_references(roots[registry.ALLISON_TRANSCRIPT_PACKAGE])
    clips = {language: parallel_clips(roots[f"asterisk-core-sounds-{language}-{extension}"], language, extension,
                                      references, per_language, seed) for language in LANGUAGES}
    return clips, versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, default=Path("adapters_store/translate-whisper"))
    parser.add_argument("--backbone", type=Path, default=Path("models/whisper-base"))
    parser.add_argument("--per-language", type=int, default=100)
    parser.add_argument("--generate", type=int, default=0, help="also full Whisper generate on the first N clips of "
                        "each language (0: not run)")
    parser.add_argument("--band", choices=sorted(BANDS), default="wide")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=4, help="the served set's rows per batch (a CPU's default)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default; 1 on a CPU "
                        "shared with other work, where spinning threads slow each other down)")
    parser.add_argument("--deb-cache", type=Path, default=DEFAULT_DEB_CACHE)
    parser.add_argument("--out", type=Path, default=Path("docs/results/translation"))
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    clips, versions = load_clips(args.deb_cache, args.band, args.per_language, args.seed)
    name = args.set.name
    served, seconds = translate_all(served_translator(args.set, args.backbone, args.batch_size), clips)
    systems = {name: {**report(name, clips, served, args.out), "seconds_per_clip": seconds}}
    if args.generate:
        subset = {language: chosen[: args.generate] for language, chosen in clips.items()}
        generated, seconds = translate_all(generate_translator(args.backbone), subset)
        systems[f"{name} (same subset)"] = report(f"{name}-subset", subset, served, None)
        systems["whisper base generate"] = {**report("whisper-generate", subset, generated, args.out),
                                            "seconds_per_clip": seconds}
        systems["same text as generate"] = {language: round(np.mean([a.text == b.text for a, b in zip(
            served[language], generated[language], strict=False)]), 3) for language in subset}
    summary = {"command": "python -m training.translation_eval " + " ".join(argv if argv is not None else sys.argv[1:]),
               "band": args.band, "seed": args.seed, "per_language": args.per_language, "packages": versions,
               "min_reference_words": MIN_REFERENCE_WORDS, "systems": systems}
    (args.out / "translation.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    print(table(systems))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
