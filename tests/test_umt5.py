"""The UMT5 text encoder (models/umt5.py) with a tiny random encoder and a tokenizer built locally."""

import pytest
import torch

pytest.importorskip("transformers")

from stream_r1.models.umt5 import tiny_umt5  # noqa: E402

WORDS = "a red fox runs through snow the paper boat drifts on calm lake blurry static".split()


@pytest.fixture(scope="module")
def encoder():
    return tiny_umt5(WORDS, d_model=16, max_length=12, negative_prompt="blurry static")


def test_tokenizer_is_local_and_word_level(encoder):
    ids = encoder.tokenizer(["a red fox"], padding="max_length", max_length=12)["input_ids"][0]
    assert encoder.tokenizer.convert_ids_to_tokens(ids[:4]) == ["▁a", "▁red", "▁fox", "</s>"]
    assert ids[4:] == [encoder.tokenizer.pad_token_id] * 8


def test_embeddings_are_zero_past_the_prompt_and_batch_independent(encoder):
    both = encoder(["a red fox", "the paper boat drifts on calm lake"])
    assert both.shape == (2, 12, 16) and both.dtype == torch.float32
    assert both[0, :4].abs().sum(-1).min() > 0 and both[0, 4:].abs().max() == 0  # 3 words + </s>, then zeros
    alone = encoder(["a red  fox"])  # whitespace is normalised
    assert torch.allclose(alone[0], both[0], atol=1e-6)


def test_negative_prompt_is_encoded_once_and_cached(encoder):
    neg = encoder.negative(3)
    assert neg.shape == (3, 12, 16)
    assert torch.equal(neg[1], encoder(["blurry static"])[0])
    assert encoder.negative(1).data_ptr() == neg.data_ptr()  # the cached tensor, not a new encoding
