"""Corpora: the manifest format, the embedded synthetic corpus, and importers for real corpora."""
