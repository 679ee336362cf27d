"""The DiT (teacher, critic, student), its KV cache, text encoders and codecs."""

from .dit import DiT, DiTConfig

__all__ = ["DiT", "DiTConfig"]
