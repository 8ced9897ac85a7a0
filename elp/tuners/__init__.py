"""Adapter kinds, one folder each (config + layer), in the layout of HuggingFace peft's tuners."""
