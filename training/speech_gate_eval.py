"""Which clips does a speech gate refuse? Speech must pass; silence, noise, hum, tones and sounds must not.

Speech: every clip of the suites' manifests (all tasks) of the chosen split, by suite (near = the corpus,
far = Kokoro, human = real people), but for the prompt packages' recordings of silence (``silence-N``) and
of monkeys (``tt-monkeys``), which count as non-speech. Non-speech: seeded synthetic noise (white, pink,
brown; -50 to -20 dBFS), mains hum with harmonics, steady and two-tone (DTMF-like) tones, a sweep
(``--seed``: 0 for validation, 1 for test), and real recorded sounds: the freedesktop sound theme's
bells, clicks and ring tones (Debian ``sound-theme-freedesktop``, its spoken ``audio-channel-*`` files
left out), alternately valid and test.

For every clip the level gate's active seconds and Silero's speech probabilities are computed once; the
table then gives each gate rule's refusals: the level gate and the voice gate at each probability and
minimum. Rules are chosen on ``--split valid`` only:

    python -m training.speech_gate_eval --suite near=data/corpus --suite human=data/human --split valid
    python -m training.speech_gate_eval --suite near=data/corpus --suite far=data/far --suite human=data/human \
        --split test --seed 1 --out docs/results/speech-gate-test.json
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from elp.speech_activity import SpeechGate, chunk_levels_dbfs
from elp.tasks import TASKS
from elp.voice_activity import CHUNK, CHUNK_S, speech_probabilities
from training.corpus.audio import pink_noise
from training.data.manifest import read_manifest
from training.dataset import SAMPLE_RATE, load_audio
from training.suites.debian import DEFAULT_DEB_CACHE, extract_deb, fetch_deb

MANIFESTS = tuple(spec.name for spec in TASKS)  # the suites' manifests are named after the tasks
#: prompt-package files that hold no voice: their recordings of silence and ``tt-monkeys`` (monkeys screeching)
NON_SPEECH_PROMPT = re.compile(r"(^|/)(silence-\d+|tt-monkeys)\.\w+$")
SOUND_THEME = "sound-theme-freedesktop"
PROBABILITIES = (0.3, 0.5, 0.7)
MINIMA_S = (0.1, 0.2, 0.3, 0.5)


@dataclass
class Measured:
    group: str  # e.g. "speech/near", "non-speech/noise"
    name: str
    level_active_s: float
    probabilities: np.ndarray
    chunk_levels: np.ndarray

    def voice_s(self, probability: float, floor_dbfs: float) -> float:
        return float(((self.probabilities >= probability) & (self.chunk_levels > floor_dbfs)).sum()) * CHUNK_S


def measure(group: str, name: str, waveform: np.ndarray) -> Measured:
    return Measured(group, name, SpeechGate().active_seconds(waveform, SAMPLE_RATE),
                    speech_probabilities(waveform, SAMPLE_RATE), chunk_levels_dbfs(waveform, CHUNK))


def suite_clips(label: str, folder: Path, split: str) -> Iterator[tuple[str, str, np.ndarray]]:
    """(group, name, waveform) of every manifest row of ``split`` (each file once)."""
    seen: set[str] = set()
    for manifest in MANIFESTS:
        path = folder / f"{manifest}.jsonl"
        if not path.is_file():
            continue
        for row in read_manifest(path):
            if row.split != split or row.path in seen:
                continue
            seen.add(row.path)
            group = "non-speech/prompts" if NON_SPEECH_PROMPT.search(row.path) else f"speech/{label}"
            yield group, row.path, load_audio(row.path)


def at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x)))) or 1.0
    return (x * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def synthetic_noise(seed: int) -> Iterator[tuple[str, str, np.ndarray]]:
    """Seeded noise, hum and tones, 2-8 s each; another seed gives other clips of the same kinds."""
    rng = np.random.default_rng(seed)
    for level in (-50.0, -40.0, -30.0, -20.0):
        for kind in ("white", "pink", "brown"):
            n = int(rng.uniform(2, 8) * SAMPLE_RATE)
            white = rng.standard_normal(n)
            x = {"white": white, "pink": pink_noise(n, rng), "brown": np.cumsum(white) - np.cumsum(white).mean()}[kind]
            yield "non-speech/noise", f"{kind}@{level:g}", at_level(x, level)
    t = np.arange(int(4 * SAMPLE_RATE)) / SAMPLE_RATE
    for mains in (50.0, 60.0):
        hum = sum(rng.uniform(0.2, 1) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 6)) for k in range(1, 8))
        yield "non-speech/hum and tones", f"hum {mains:g} Hz", at_level(hum + 0.01 * rng.standard_normal(t.size), -30)
    for _ in range(3):
        low, high = rng.uniform(300, 1000), rng.uniform(1100, 1700)
        yield "non-speech/hum and tones", f"tone {low:.0f} Hz", at_level(np.sin(2 * np.pi * low * t), -20)
        beeps = (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)) * ((t * 4) % 1 < 0.5)
        yield "non-speech/hum and tones", f"two-tone {low:.0f}+{high:.0f} Hz", at_level(beeps, -20)
    sweep = np.sin(2 * np.pi * (100 * t + (rng.uniform(500, 2000) / 8) * t ** 2))
    yield "non-speech/hum and tones", "sweep", at_level(sweep, -20)


def theme_sounds(split: str, cache: Path) -> Iterator[tuple[str, str, np.ndarray]]:
    """The sound theme's non-speech sounds, sorted by name: even places valid, odd test."""
    from training.suites.debian import decode_file

    root = extract_deb(fetch_deb(cache, SOUND_THEME), cache / "extracted")
    files = sorted(p for p in root.rglob("*.oga") if not p.stem.startswith("audio-channel-"))
    for i, path in enumerate(files):
        if (i % 2 == 0) == (split == "valid"):
            yield "non-speech/recorded sounds", path.stem, decode_file(path)


def refusal_table(measured: list[Measured], floor_dbfs: float = -55.0) -> list[dict]:
    """Share of each group refused by each rule (speech refused is the error; non-speech refused the aim)."""
    groups = sorted({m.group for m in measured})
    rules: list[tuple[str, Callable[[Measured], bool]]] = [("level gate (0.3 s above -55 dBFS)",
                                          lambda m: m.level_active_s < 0.3)]
    for p in PROBABILITIES:
        for minimum in MINIMA_S:
            rules.append((f"voice p>={p:g}, {minimum:g} s",
                          lambda m, p=p, minimum=minimum: m.voice_s(p, floor_dbfs) < minimum))
    table = []
    for rule, refuses in rules:
        row = {"rule": rule}
        for group in groups:
            members = [m for m in measured if m.group == group]
            row[group] = {"refused": sum(map(refuses, members)), "of": len(members),
                          "names": [m.name for m in members if refuses(m)][:8]}
        table.append(row)
    return table


def markdown(table: list[dict]) -> str:
    groups = [k for k in table[0] if k != "rule"]
    lines = ["| rule | " + " | ".join(f"{g} ({table[0][g]['of']})" for g in groups) + " |",
             "|---|" + "---:|" * len(groups)]
    for row in table:
        cells = [f"{100 * row[g]['refused'] / max(1, row[g]['of']):.1f}%" for g in groups]
        lines.append(f"| {row['rule']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", action="append", default=[], metavar="LABEL=FOLDER")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--seed", type=int, default=0, help="synthetic noise: 0 for validation, 1 for test")
    parser.add_argument("--deb-cache", type=Path, default=DEFAULT_DEB_CACHE)
    parser.add_argument("--no-sounds", action="store_true", help="leave out the Debian sound theme")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    clips: list[Iterator[tuple[str, str, np.ndarray]]] = []
    for spec in args.suite:
        label, folder = spec.split("=", 1)
        clips.append(suite_clips(label, Path(folder), args.split))
    clips.append(synthetic_noise(args.seed))
    if not args.no_sounds:
        clips.append(theme_sounds(args.split, args.deb_cache))
    measured = [measure(group, name, wave) for source in clips for group, name, wave in source]
    table = refusal_table(measured)
    print(markdown(table))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": argv, "split": args.split, "seed": args.seed,
                                        "table": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
