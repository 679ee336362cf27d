"""The paper-scale text encoder (DESIGN.md §5): UMT5 through transformers, as Wan 2.1 uses it.

Prompts are whitespace-normalised, tokenised to exactly `max_length` tokens (512 in Wan) and encoded
by a frozen `UMT5EncoderModel`; embeddings past each prompt's last token are set to zero, as Wan pads
its text context with zeros. The negative prompt used for classifier-free guidance is encoded once
and cached. transformers is imported lazily (the `paper` extra).
"""

from __future__ import annotations

import os

import torch
from torch import nn


class UMT5TextEncoder(nn.Module):
    """Frozen UMT5 encoder: prompts -> [B, max_length, d_model] float32, zero past each prompt's end."""

    def __init__(self, encoder: nn.Module, tokenizer, max_length: int = 512, negative_prompt: str = "") -> None:
        super().__init__()
        self.encoder = encoder.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.negative_prompt = negative_prompt
        self._negative: torch.Tensor | None = None

    @classmethod
    def from_pretrained(cls, encoder_path: str | os.PathLike, tokenizer_path: str | os.PathLike,
                        dtype: torch.dtype = torch.float32, **kwargs) -> UMT5TextEncoder:
        """Load local folders (e.g. Wan2.1-T2V-1.3B-Diffusers/text_encoder and /tokenizer); never downloads."""
        from transformers import AutoTokenizer, UMT5EncoderModel

        for p in (encoder_path, tokenizer_path):
            if not os.path.isdir(p):
                raise FileNotFoundError(f"no folder {p}; download Wan-AI/Wan2.1-T2V-1.3B-Diffusers and point "
                                        "text.path / text.tokenizer at its text_encoder/ and tokenizer/ folders")
        encoder = UMT5EncoderModel.from_pretrained(str(encoder_path), dtype=dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path), local_files_only=True)
        return cls(encoder, tokenizer, **kwargs)

    @property
    def dim(self) -> int:
        return int(self.encoder.config.d_model)

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        """Encode prompts to [B, max_length, d_model]."""
        texts = [" ".join(p.split()) for p in prompts]
        tok = self.tokenizer(texts, padding="max_length", max_length=self.max_length, truncation=True,
                             add_special_tokens=True, return_tensors="pt")
        device = next(self.encoder.parameters()).device
        ids, mask = tok["input_ids"].to(device), tok["attention_mask"].to(device)
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        return hidden * mask.unsqueeze(-1).to(hidden)

    def negative(self, batch: int) -> torch.Tensor:
        """The cached negative-prompt embedding, repeated to [batch, max_length, d_model]."""
        if self._negative is None:
            self._negative = self([self.negative_prompt])
        return self._negative.expand(batch, -1, -1)


def tiny_umt5(vocab_words: list[str], d_model: int = 16, seed: int = 0, max_length: int = 16,
              negative_prompt: str = "") -> UMT5TextEncoder:
    """A random UMT5 encoder with a word-level Unigram tokenizer built locally (tests, --dry-run)."""
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    words = sorted({w for w in vocab_words})
    vocab = specials + [("▁" + w, -1.0 - i / len(words)) for i, w in enumerate(words)]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    config = UMT5Config(vocab_size=len(vocab), d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=1,
                        num_heads=2, relative_attention_num_buckets=8, relative_attention_max_distance=16,
                        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = UMT5EncoderModel(config)
    return UMT5TextEncoder(encoder, tokenizer, max_length=max_length, negative_prompt=negative_prompt)
