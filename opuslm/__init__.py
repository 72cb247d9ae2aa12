"""OpusLM: unified speech-text language models built on Hugging Face causal LMs."""

__version__ = "0.1.0"
