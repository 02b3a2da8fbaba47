"""The small model's tokenizer: digits one token each, exact round trips."""
import pytest

from ov2_ros.model.prompt import SPECIAL_TOKENS


@pytest.mark.parametrize("text", ["[12, 40, 300, 999]", "[0.28, 0.95, 1.61]", "The event happens in 13.2 - 25.1 seconds"])
def test_every_digit_is_its_own_token_and_text_round_trips(tokenizer, text):
    ids = tokenizer.encode(text)
    pieces = [tokenizer.decode([i]) for i in ids]
    digits = [piece for piece in pieces if any(c.isdigit() for c in piece)]
    assert digits == [c for c in text if c.isdigit()]  # every digit alone, in order, none merged
    assert tokenizer.decode(ids) == text


def test_special_tokens_stay_single_ids(tokenizer):
    for token in SPECIAL_TOKENS:
        assert len(tokenizer.encode(f"a{token}7")) == 3
