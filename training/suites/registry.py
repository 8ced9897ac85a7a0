"""The one table of held-out speakers, sources and roles that the suites and the guard share.

Roles were fixed by the lead: ``valid`` speakers calibrate thresholds and choose models; ``test``
speakers are never trained on and never used to choose anything.
"""

from __future__ import annotations

from dataclasses import dataclass

ASTERISK_SOUNDS = "usr/share/asterisk/sounds"


@dataclass(frozen=True)
class HumanSource:
    """One recording set of one real person: where it comes from and how to read it."""

    speaker: str  # suite speaker id (one person may have several sources)
    role: str  # valid | test
    language: str
    package: str  # Debian package ('' for the pocketsphinx sdist)
    folder: str  # folder inside the extracted package
    extension: str  # wav | gsm | g722


#: Every real person of the human suite, by role. ``allison`` speaks in two packages (English and
#: Mexican Spanish): one person, one speaker id, so cross-language pairs are same-speaker pairs.
HUMAN_SOURCES: tuple[HumanSource, ...] = (
    HumanSource("june", "valid", "fr", "asterisk-core-sounds-fr-wav", f"{ASTERISK_SOUNDS}/fr_CA_f_June", "wav"),
    HumanSource("menardi", "valid", "it", "asterisk-prompt-it-menardi-wav", f"{ASTERISK_SOUNDS}/it_IT_f_Menardi",
                "wav"),
    HumanSource("carlo", "valid", "it", "asterisk-core-sounds-it-wav", f"{ASTERISK_SOUNDS}/it_IT_m_Carlo", "wav"),
    HumanSource("allison", "test", "en", "asterisk-core-sounds-en-wav", f"{ASTERISK_SOUNDS}/en_US_f_Allison", "wav"),
    HumanSource("allison", "test", "es", "asterisk-core-sounds-es-wav", f"{ASTERISK_SOUNDS}/es_MX_f_Allison", "wav"),
    HumanSource("ivrvoice_ru", "test", "ru", "asterisk-core-sounds-ru-wav", f"{ASTERISK_SOUNDS}/ru_RU_f_IvrvoiceRU",
                "wav"),
    HumanSource("es_co", "test", "es", "asterisk-prompt-es-co", f"{ASTERISK_SOUNDS}/es", "gsm"),
    HumanSource("armelle", "test", "fr", "asterisk-prompt-fr-armelle", f"{ASTERISK_SOUNDS}/fr", "gsm"),
    HumanSource("alsa", "test", "en", "alsa-utils", "usr/share/sounds/alsa", "wav"),
    HumanSource("librivox", "test", "en", "", "pocketsphinx/test/data/librivox", "wav"),
)

#: Recordings with transcripts but no documented identity: ASR only, never in a speaker trial.
ASR_ONLY_SOURCES: tuple[str, ...] = ("cards", "goforward")

#: Packages read for ASR only (the 16 kHz G.722 Allison prompts and their transcripts).
ALLISON_WIDEBAND_PACKAGE = "asterisk-core-sounds-en-g722"
ALLISON_TRANSCRIPT_PACKAGE = "asterisk-core-sounds-en"

#: The synthesiser family held out of training: its clips carry ``meta.synth == KOKORO_SYNTH``.
KOKORO_SYNTH = "kokoro"
#: the game whose dialogue is the diarization test suite (conversations-game-test): its actors are held out from
#: training any task that learns speakers (its lines may still teach words: training.corpus.gamevox)
GAME_DIALOGUE_SOURCE = "flight-of-the-amazon-queen"


def human_speaker_roles() -> dict[str, str]:
    """speaker id -> role, one entry per real person."""
    roles: dict[str, str] = {}
    for source in HUMAN_SOURCES:
        if roles.setdefault(source.speaker, source.role) != source.role:
            raise AssertionError(f"{source.speaker} has two roles")
    return roles


def speakers_with_role(role: str) -> list[str]:
    return sorted(s for s, r in human_speaker_roles().items() if r == role)


def debian_packages() -> list[str]:
    """Every Debian package the human suite downloads."""
    names = [s.package for s in HUMAN_SOURCES if s.package]
    return sorted({*names, ALLISON_WIDEBAND_PACKAGE, ALLISON_TRANSCRIPT_PACKAGE})
