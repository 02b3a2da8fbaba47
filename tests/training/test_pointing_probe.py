"""The pointing probe: shots whose answer points at the thing's block, and an LLM that learns them."""
import torch

from tests.model.conftest import model_dir, tokenizer  # noqa: F401 (the fixtures)
from training.pointing_probe import COLS, ROWS, TOKEN_NORM, ProbeShots, probe


def test_each_shot_answers_with_the_column_of_the_block_that_holds_the_thing(tokenizer):
    shots = ProbeShots(tokenizer, hidden=48, position_share=0.3, seed=0)
    image_pad = tokenizer.token_ids().image_pad
    columns = set()
    for _ in range(30):
        tokens, ids, first_x = shots.shot()
        assert tokens.shape == (ROWS * COLS, 48) and ids.count(image_pad) == ROWS * COLS
        torch.testing.assert_close(tokens.norm(dim=-1), torch.full((ROWS * COLS,), TOKEN_NORM))
        # The thing's block is the one token nearer the thing's content than the table's.
        nearer_thing = (tokens @ shots.thing) > (tokens @ shots.table)
        assert int(nearer_thing.sum()) == 1
        block = int(nearer_thing.nonzero())
        digit = tokenizer.decode([ids[first_x]])
        assert digit == str(2 * (block % COLS) + 1), (block, tokenizer.decode(ids[first_x - 3:first_x + 3]))
        columns.add(block % COLS)
    assert columns == set(range(COLS))


def test_the_probe_trains_the_llm_on_its_shots(model_dir):
    result = probe(str(model_dir), position_share=0.3, steps=40, batch=8, eval_shots=32, every=20)
    curve = result["first_x_digit"]
    assert [point["step"] for point in curve] == [0, 20, 40]
    assert curve[-1]["nats"] < curve[0]["nats"] - 0.5  # the digit's loss falls (untrained: a guess over the vocabulary)
