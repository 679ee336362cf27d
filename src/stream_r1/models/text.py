"""Text encoders: turn prompts into token embeddings [B, L, text_dim] for cross-attention.

The toy encoder is frozen and weight-free: each vocabulary word gets a fixed, seeded random unit
vector, padded with zeros to a fixed length (Wan pads UMT5 outputs with zeros the same way). The
empty prompt "" encodes to all zeros and serves as the unconditional input for guidance.
"""

from __future__ import annotations

import torch

from ..toyworld.prompts import MAX_PROMPT_WORDS, VOCABULARY, parse_prompt


class ToyTextEncoder:
    """Fixed word-vector encoder for the toy grammar (validates every prompt it encodes)."""

    def __init__(self, dim: int = 32, max_tokens: int = MAX_PROMPT_WORDS, seed: int = 0) -> None:
        self.dim = dim
        self.max_tokens = max_tokens
        gen = torch.Generator().manual_seed(seed)
        table = torch.randn(len(VOCABULARY), dim, generator=gen)
        self.table = table / table.norm(dim=1, keepdim=True)
        self.index = {w: i for i, w in enumerate(VOCABULARY)}

    def encode_one(self, prompt: str) -> torch.Tensor:
        out = torch.zeros(self.max_tokens, self.dim)
        if prompt == "":
            return out
        parse_prompt(prompt)  # raises PromptError with a fix for anything outside the grammar
        words = prompt.strip().lower().replace(",", " ").split()
        ids = torch.tensor([self.index[w] for w in words])
        out[: len(ids)] = self.table[ids]
        return out

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        """Encode prompts to [B, max_tokens, dim]; "" gives the unconditional (all-zero) embedding."""
        return torch.stack([self.encode_one(p) for p in prompts])
