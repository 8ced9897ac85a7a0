"""An intent set's text branch: the ASR set's transcript of the same encoder pass, read by a word
classifier whose intent scores are fused with the acoustic head's (``config``: what is stored;
``branch``: the modules; ``features``: transcript -> features, torch-free)."""
