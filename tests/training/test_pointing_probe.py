"""The pointing probe: shots whose answer points at the thing's block, and an LLM that learns them."""
import torch

from ov2_ros.model.checkpoint import load_model
from tests.model.conftest import model_dir, tokenizer  # noqa: F401 (the fixtures)
from training.data import IGNORE, ClipCache, ClipSpec
from training.pointing_probe import COLS, ROWS, TOKEN_NORM, ProbeShots, RealShots, probe


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


def test_real_shots_ask_the_real_prompt_and_label_the_answer_from_its_start(model_dir, tokenizer, tmp_path):
    cache = ClipCache(tmp_path / "cache")
    specs = [ClipSpec("mid", seed, duration_s=1.0) for seed in range(3)]
    model = load_model(model_dir)
    shots = RealShots(model, tokenizer, cache, specs, seed=0, desc="shots")
    input_ids, labels, tokens, first_x = shots.all(filler=model.config.tokens.end_of_text)
    for row, spec in enumerate(specs):
        _, truth = cache.clip(spec)
        thing = truth["episode"]["things"][-1]
        ids = input_ids[row].tolist()
        assert ids.count(tokenizer.token_ids().image_pad) == tokens[row].shape[0]
        labelled = (labels[row] != IGNORE).nonzero()[:, 0]
        answer = tokenizer.decode(input_ids[row, labelled].tolist())
        assert answer.startswith("<tracks coords=") and thing["label"] in answer
        # The first x digit is the answer's x's first digit: the thing's centre in 0-1000 of the width.
        x = round(thing["centre_xy"][0] / spec.width * 1000)
        assert tokenizer.decode([ids[first_x[row]]]) == str(x)[0]
        assert labelled[0] <= first_x[row] <= labelled[-1]
    assert shots.majority_share() >= 1 / 3
