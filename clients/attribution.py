"""Who said what, on the client: ``elp.attribution`` (the server's OpenAI route uses the same rules)."""

from elp.attribution import LINE_PAUSE_S, MAX_LINE_S, attribute, speaker_of

__all__ = ["LINE_PAUSE_S", "MAX_LINE_S", "attribute", "speaker_of"]
