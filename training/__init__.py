"""Training recipe: corpus manifests, metrics and plots that fill the ELP adapter store."""
