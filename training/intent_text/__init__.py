"""Training of the intent set's text branch: the ASR set's transcript of each clip, read by a small
word classifier whose scores are fused with the acoustic head's (``elp.text_intent``)."""
