"""stream-r1: reliability-perplexity aware reward distillation for streaming video generation."""

__version__ = "0.1.0"
