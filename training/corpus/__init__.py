"""Offline synthetic four-task speech corpus (ASR, verification, emotion, intent).

Built from the Debian synthesisers espeak-ng, flite and festival so that the adapters can be
trained without any network access; see docs/corpus.md for how every label is made.
"""

GENERATOR_VERSION = "1.0.0"
