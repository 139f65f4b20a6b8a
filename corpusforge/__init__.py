"""corpusforge: TinyStories-style synthetic corpora on ordinary CPUs with llama.cpp."""

__version__ = "0.1.0"
