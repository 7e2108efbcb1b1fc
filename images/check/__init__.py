"""`make images-check`: the image environments built and resolved from their locks (stdlib only)."""
