"""Held-out evaluation suites: data the generator did not make and the training never sees.

* ``human``: real people from Debian packages, the pocketsphinx sdist and alsa-utils;
* ``far``: Kokoro-82M neural voices (a synthesiser family no training clip comes from);
* ``phrasings``: intent phrasings written apart from the training templates.

Training-side code only: the server never imports this package.
"""
