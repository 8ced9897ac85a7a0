"""Where the real voices of ``training.corpus.realvox`` come from: one reader per Debian package family.

Why: distillation needs many real voices (the teacher's embeddings are the only label), and the Debian
archive holds recorded speech in education and game packages, usually one reader per language folder.
Each reader maps an extracted package to *groups* of clips that are assumed to share one voice
(``realvox`` checks that assumption with the teacher and splits groups that hold two voices). Groups
are named ``<source>-<group>``; identical files (packages ship the same recording under several locale
names) are kept once, and each group is capped to a seeded sample so one long source cannot dominate.

| source | package(s) | group = |
|---|---|---|
| klettres | klettres-data | language folder (letters, syllables) |
| ktuberling | ktuberling-data | language folder (toy and object names) |
| tuxpaint | tuxpaint-stamps-default | language of the stamps' ``*_desc_<lang>.ogg`` descriptions |
| fillets | fillets-ng-data(-cs, -nl) | language x fish: ``<level>-m-*`` small, ``<level>-v-*`` big |
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

AUDIO_SUFFIXES = (".ogg", ".opus", ".wav", ".flac")
Groups = dict[str, list[Path]]


def audio_files(folder: Path, pattern: str = "*") -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.suffix in AUDIO_SUFFIXES and p.is_file())


def klettres_groups(package_root: Path) -> Groups:
    """KLettres: ``usr/share/klettres/<lang>/{alpha,syllab}/*.ogg``, one reader per language."""
    root = package_root / "usr/share/klettres"
    groups = {folder.name: audio_files(folder, "*/*") for folder in sorted(p for p in root.iterdir() if p.is_dir())}
    return {name: clips for name, clips in groups.items() if clips}


def ktuberling_groups(package_root: Path) -> Groups:
    """KTuberling: ``usr/share/ktuberling/sounds/<lang>/*.{ogg,opus}``, the toys' names per language."""
    root = package_root / "usr/share/ktuberling/sounds"
    groups = {folder.name: audio_files(folder) for folder in sorted(p for p in root.iterdir() if p.is_dir())}
    return {name: clips for name, clips in groups.items() if clips}


TUXPAINT_DESC = re.compile(r"_desc(?:_(?P<lang>[A-Za-z]{2,3}(?:_[A-Z]{2})?))?\.ogg$")


def tuxpaint_groups(package_root: Path) -> Groups:
    """Tux Paint stamps: ``<stamp>_desc_<lang>.ogg`` spoken descriptions (``<stamp>_desc.ogg`` = ``en``);
    plain ``<stamp>.ogg`` files are sound effects and are left out."""
    groups: Groups = {}
    for path in sorted((package_root / "usr/share/tuxpaint/stamps").rglob("*_desc*.ogg")):
        match = TUXPAINT_DESC.search(path.name)
        if match:
            groups.setdefault(match.group("lang") or "en", []).append(path)
    return groups


FILLETS_FISH = {"m": "small", "v": "big"}


def fillets_groups(package_root: Path) -> Groups:
    """Fish Fillets NG dialogue: ``sound/<level>/<lang>/<level>-<who>-<word>.ogg``; only the two fish
    (``m`` small, ``v`` big) speak in every level, the other characters' lines are left out."""
    groups: Groups = {}
    for path in sorted((package_root / "usr/share/games/fillets-ng/sound").glob("*/*/*.ogg")):
        parts = path.stem.split("-")
        if len(parts) >= 3 and parts[1] in FILLETS_FISH:
            groups.setdefault(f"{path.parent.name}-{FILLETS_FISH[parts[1]]}", []).append(path)
    return groups


READERS: dict[str, Callable[[Path], Groups]] = {
    "klettres": klettres_groups, "ktuberling": ktuberling_groups, "tuxpaint": tuxpaint_groups,
    "fillets": fillets_groups,
}
PACKAGE_PREFIXES = {"klettres-data": "klettres", "ktuberling-data": "ktuberling",
                    "tuxpaint-stamps": "tuxpaint", "fillets-ng-data": "fillets"}


def source_of(deb: str | Path) -> str:
    """The reader for a .deb file, from its package name."""
    package = Path(deb).name.split("_", 1)[0]
    for prefix, source in PACKAGE_PREFIXES.items():
        if package.startswith(prefix):
            return source
    raise ValueError(f"no real-voice reader for package {package!r} (known: {sorted(PACKAGE_PREFIXES)})")


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dedupe(groups: Groups) -> Groups:
    """Each distinct file once, in the first group (sorted by name) that holds it: KTuberling ships the
    same Serbian recordings under four locale folders, which are one voice, not four."""
    seen: set[str] = set()
    kept: Groups = {}
    for name in sorted(groups):
        for path in groups[name]:
            digest = file_digest(path)
            if digest not in seen:
                seen.add(digest)
                kept.setdefault(name, []).append(path)
    return kept


def cap(groups: Groups, max_clips: int, seed: int) -> Groups:
    """At most ``max_clips`` clips a group: a seeded hash order of the file names, then sorted again."""
    def rank(path: Path) -> str:
        return hashlib.sha256(f"{seed}|{path.name}".encode()).hexdigest()

    return {name: sorted(sorted(clips, key=rank)[:max_clips]) if max_clips else clips
            for name, clips in groups.items()}


def read_groups(source: str, package_root: Path, max_clips: int, seed: int, min_clips: int) -> Groups:
    """``source``'s groups in an extracted package, deduplicated, capped, without groups under
    ``min_clips`` clips; keys are ``<source>-<group>``."""
    groups = cap(dedupe(READERS[source](package_root)), max_clips, seed)
    return {f"{source}-{name}": clips for name, clips in groups.items() if len(clips) >= min_clips}
