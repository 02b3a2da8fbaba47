"""Datasets from real encoded clips, packing, and training that learns, resumes and reloads."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from ov2_ros.model.checkpoint import load_model, save_model
from ov2_ros.model.inputs import vision_input_from
from ov2_ros.model.parsers import parse_output, FrameSize
from ov2_ros.model.prompt import IMAGE_PAD
from tests.model.conftest import tiny_model
from ov2_ros.tokenizer.files import tokenize_file
from training.centre_vision import centre, mean_vision_token
from training.data import IGNORE, ClipCache, ClipSpec, examples_for_clip, pack, pack_rows
from training.tasks import TABLE_WORDINGS, point_answer_spans, table_listing
from training.text import build_tokenizer
from training.train import StageConfig, add_merger_positions, train_stage

STAGE = StageConfig(name="test", trainable="all", steps=8, lr=2e-3, lr_min=2e-3, warmup_steps=1, max_tokens=1200,
                    clips={"bounce": 1, "pickplace": 1}, durations_s={"bounce": [6.0, 6.0], "pickplace": [6.0, 6.0]},
                    budgets=(4,), save_every=4, seed=0)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    tokenizer = build_tokenizer(root / "tokenizer.json", vocab_size=600)
    return root, tokenizer


def test_examples_label_only_the_answer_and_pack_their_vision_in_order(workspace):
    root, tokenizer = workspace
    cache = ClipCache(root / "cache")
    spec = ClipSpec("pickplace", 3, duration_s=6.0)
    examples = examples_for_clip(cache, tokenizer, spec, "codec", 4, np.random.default_rng(0))
    tasks = [e.qa.task for e in examples]
    assert {"segment", "box", "tracks", "trace", "caption", "predicted_trace"} <= set(tasks)
    for example in examples:
        answer = [t for t in example.labels if t != IGNORE]
        assert tokenizer.decode(answer) == example.qa.answer + "<|im_end|>"
        if example.qa.output_format:
            parse_output(example.qa.answer, example.qa.output_format, FrameSize(160, 120))
        assert example.vision.canvas_count <= 4
    batch = pack(examples[:3])
    pad = tokenizer.token_ids().image_pad
    assert int((batch.input_ids == pad).sum()) == sum(
        int((np.concatenate(e.vision.positions_thw).reshape(-1, 4, 3)[:, 0, 0] >= 0).sum()) for e in examples[:3])
    assert batch.segment_ids[0].unique().tolist() == [0, 1, 2]
    # Cached: a second call reads the same canvases from disk.
    again = cache.vision(spec, "codec", 4)
    assert all(np.array_equal(a, b) for a, b in zip(again.canvases, examples[0].vision.canvases))


@pytest.mark.parametrize("world", ["stills", "lone"])
def test_still_shots_ask_for_boxes_points_and_the_things_in_order(workspace, world):
    root, tokenizer = workspace
    cache = ClipCache(root / "cache")
    spec = ClipSpec(world, 4, duration_s=1.0)
    _, truth = cache.clip(spec)
    things = {t["label"]: t for t in truth["episode"]["things"]}
    frame = FrameSize(160, 120)
    examples = examples_for_clip(cache, tokenizer, spec, "codec", 16, np.random.default_rng(1))
    assert [e.qa.task for e in examples] == ["box", "point", "caption"]
    assert all(e.vision.canvas_count <= 4 for e in examples)  # one group, whatever the budget
    box, point, listing = examples
    (thing,) = [t for label, t in things.items() if f"the {label}" in box.qa.question]
    parsed = parse_output(box.qa.answer, "box", frame)
    assert np.allclose([parsed.x1, parsed.y1, parsed.x2, parsed.y2], thing["box_xyxy"], atol=0.2)
    (track,) = parse_output(point.qa.answer, "tracks", frame)
    x0, y0, x1, y1 = things[track.label]["box_xyxy"]
    assert track.label in point.qa.question and x0 < track.points[0].x < x1 and y0 < track.points[0].y < y1
    x_span, y_span, label_span = point_answer_spans(point.qa.answer)  # what ov2 eval scores digit by digit
    assert point.qa.answer[slice(*label_span)] == track.label
    assert int(point.qa.answer[slice(*x_span)]) == pytest.approx(track.points[0].x / 160 * 1000, abs=1)
    assert int(point.qa.answer[slice(*y_span)]) == pytest.approx(track.points[0].y / 120 * 1000, abs=1)
    order = sorted(things, key=lambda label: things[label]["centre_xy"][0])
    assert listing.qa.answer == "From left to right: " + ", ".join(f"a {label}" for label in order) + "."


def test_codec_and_frames_hold_the_same_budget(workspace):
    root, _ = workspace
    cache = ClipCache(root / "cache")
    spec = ClipSpec("bounce", 5, duration_s=8.0)
    for budget in (4, 8, 16):
        codec, frames = cache.vision(spec, "codec", budget), cache.vision(spec, "frames", budget)
        assert codec.canvas_count <= budget and frames.canvas_count == budget
        times = np.concatenate(codec.positions_thw)[:, 0]
        assert times[times >= 0].max() > 0.7 * 8.0 * 30  # the codec groups cover the whole clip


def test_live_input_is_the_nodes_window_over_the_clip(workspace):
    """The live tokenizer's groups, spread over the clip within the budget, t from the first shown frame."""
    root, _ = workspace
    cache = ClipCache(root / "cache")
    spec = ClipSpec("bounce", 5, duration_s=8.0)
    every = tokenize_file(cache.clip(spec)[0], mode="stream")[0].groups  # the live tokenizer, whole clip
    assert sum(g.canvases.shape[0] for g in every) > 16
    for budget in (4, 8, 16):
        live = cache.vision(spec, "live", budget)
        assert 0 < live.canvas_count <= budget
        shown = [g for g in every if any(np.array_equal(g.canvases, c) for c in live.canvases)]
        assert len(shown) == len(live.canvases)  # whole live groups, not re-cut ones
        assert shown[-1] is every[-1] and (budget == 4 or shown[0] is every[0])  # both ends of the clip
        for group, positions in zip(shown, live.positions_thw):
            real = positions[:, 0] >= 0
            np.testing.assert_array_equal(positions[real, 0], group.positions_thw[real, 0] - shown[0].first_t)


def test_a_few_steps_lower_the_loss_and_resuming_gives_the_same_model(workspace, tmp_path):
    root, tokenizer = workspace
    straight = train_stage(dataclasses.replace(STAGE, keep_checkpoints=True), tmp_path / "straight", "nano",
                           root / "cache", tokenizer_path=tokenizer.path, threads=1, progress=False)
    kept = sorted(path.name for path in (tmp_path / "straight").glob("step_*"))
    assert kept == ["step_000004", "step_000008"]  # every save_every steps, the model alone
    assert not (tmp_path / "straight" / "step_000004" / "optimizer.safetensors").exists()
    midway, final = load_model(tmp_path / "straight" / "step_000004"), load_model(straight["model"])
    assert any(not torch.equal(x, y) for x, y in zip(midway.state_dict().values(), final.state_dict().values()))
    for (name, x), (_, y) in zip(final.state_dict().items(),
                                 load_model(tmp_path / "straight" / "step_000008").state_dict().items()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.5, losses
    assert (tmp_path / "straight" / "tensorboard").is_dir()

    half = dataclasses.replace(STAGE, steps=4)
    train_stage(half, tmp_path / "resumed", "nano", root / "cache", tokenizer_path=tokenizer.path, threads=1,
                progress=False)
    with open(tmp_path / "resumed" / "log.jsonl", "a") as log:  # a run killed after step 5, mid-line in step 6
        log.write(json.dumps({"step": 5, "loss": 99.0}) + "\n" + '{"step": 6, "lo')
    train_stage(STAGE, tmp_path / "resumed", "nano", root / "cache", tokenizer_path=tokenizer.path, threads=1,
                resume=True, progress=False)
    records = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))  # each step once: the killed run's 5 is gone
    np.testing.assert_allclose([r["loss"] for r in records], losses, atol=1e-3)
    a, b = load_model(straight["model"]), load_model(tmp_path / "resumed" / "last")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)
    assert a.config.max_pixels == 168 * 112  # 160x120 worlds, processed at 168x112: the model's frame area


def test_bf16_mixed_precision_computes_in_bf16_scores_as_fp32_and_learns(workspace, tmp_path):
    """precision bf16: matrix products in bfloat16, the loss within a percent of fp32's on the
    same batch; a bf16 run learns as the fp32 one does and saves fp32 weights."""
    from training.train import autocast, batch_loss

    root, tokenizer = workspace
    model = tiny_model(tokenizer, seed=5)
    example = examples_for_clip(ClipCache(root / "cache"), tokenizer, ClipSpec("pickplace", 3, duration_s=6.0),
                                "codec", 4, np.random.default_rng(0))[0]
    computed = []
    model.language_model.layers[0].mlp.up_proj.register_forward_hook(lambda m, a, out: computed.append(out.dtype))
    with torch.no_grad():
        full = float(batch_loss(model, pack([example])))
        with autocast("bf16"):
            mixed = batch_loss(model, pack([example]))
    assert computed == [torch.float32, torch.bfloat16] and mixed.dtype == torch.float32
    assert float(mixed) == pytest.approx(full, rel=0.01) and float(mixed) != full
    with pytest.raises(ValueError, match="precision"):
        train_stage(STAGE, tmp_path / "fp8", "nano", root / "cache", precision="fp8")
    assert not (tmp_path / "fp8").exists()  # refused before anything was written

    trained = train_stage(STAGE, tmp_path / "bf16", "nano", root / "cache", tokenizer_path=tokenizer.path,
                          threads=1, progress=False, precision="bf16")
    losses = [json.loads(line)["loss"] for line in (tmp_path / "bf16" / "log.jsonl").read_text().splitlines()]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.5, losses
    assert all(value.dtype == torch.float32 for value in load_model(trained["model"]).state_dict().values())


def test_examples_side_by_side_score_as_each_alone_and_a_frozen_vision_tower_stays(workspace, tmp_path):
    """examples_per_step: rows padded to the longest give every answer token the loss it has
    alone; a frozen encoder's output computed once gives the same loss; trainable "llm" trains
    the LLM and leaves the encoder and merger as they were."""
    from training.train import FrozenEncoder, batch_loss

    root, tokenizer = workspace
    cache = ClipCache(root / "cache")
    model = tiny_model(tokenizer, seed=5)
    specs = [ClipSpec("bounce", 0, duration_s=6.0), ClipSpec("pickplace", 3, duration_s=6.0)]
    examples = [examples_for_clip(cache, tokenizer, spec, "codec", 4, np.random.default_rng(0))[0] for spec in specs]
    assert len({len(e.input_ids) for e in examples}) == 2  # the shorter row is padded
    with torch.no_grad():
        side_by_side = batch_loss(model, pack_rows([[e] for e in examples], filler=model.config.tokens.end_of_text))
        alone = [float(batch_loss(model, pack([e]))) for e in examples]
    answers = [sum(label != IGNORE for label in e.labels[1:]) for e in examples]
    assert float(side_by_side) == pytest.approx(np.average(alone, weights=answers), rel=1e-4)

    frozen = FrozenEncoder(model)
    frames = examples_for_clip(cache, tokenizer, specs[0], "frames", 4, np.random.default_rng(0))[0]
    rows = [[examples[0]], [examples[1]], [frames], [examples[0]]]
    with torch.no_grad():
        through_tower = batch_loss(model, pack_rows(rows, filler=model.config.tokens.end_of_text))
        memoised = batch_loss(model, pack_rows(rows, filler=model.config.tokens.end_of_text),
                              frozen([e for row in rows for e in row]))
    assert float(memoised) == pytest.approx(float(through_tower), rel=1e-5)
    # The same clip input is encoded once; its frames baseline is another input.
    assert len(frozen.hidden) == 3
    reloaded = examples_for_clip(cache, tokenizer, specs[0], "codec", 4, np.random.default_rng(1))[0]
    assert torch.equal(frozen([reloaded]), frozen([examples[0]])) and len(frozen.hidden) == 3

    save_model(model, tmp_path / "init", tokenizer.path)
    stage = dataclasses.replace(STAGE, trainable="llm", examples_per_step=3, steps=2, save_every=2,
                                clips={"bounce": 2}, durations_s={"bounce": [6.0, 6.0]}, tasks=("events",))
    train_stage(stage, tmp_path / "llm", str(tmp_path / "init"), root / "cache", threads=1, progress=False)
    log = [json.loads(line) for line in (tmp_path / "llm" / "log.jsonl").read_text().splitlines()]
    assert [record["examples"] for record in log] == [3, 3]
    before, after = model.state_dict(), load_model(tmp_path / "llm" / "last").state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before if name.startswith("visual."))
    assert not torch.equal(before["language_model.layers.0.mlp.up_proj.weight"],
                           after["language_model.layers.0.mlp.up_proj.weight"])


def test_trainable_override_keeps_the_encoder_and_trains_merger_and_llm(workspace, tmp_path):
    """`--trainable merger+llm` on a stage that trains everything: the encoder stays as --init
    has it (what the pipeline's --trainable does to every stage)."""
    from training.train import main

    root, tokenizer = workspace
    model = tiny_model(tokenizer, seed=7)
    save_model(model, tmp_path / "init", tokenizer.path)
    stage = tmp_path / "stage.json"
    stage.write_text(json.dumps(dataclasses.asdict(dataclasses.replace(STAGE, steps=2, save_every=2))))
    assert main(["--stage", str(stage), "--out", str(tmp_path / "run"), "--init", str(tmp_path / "init"),
                 "--cache", str(root / "cache"), "--threads", "1", "--trainable", "merger+llm"]) == 0
    assert json.loads((tmp_path / "run" / "stage.json").read_text())["trainable"] == "merger+llm"
    before, after = model.state_dict(), load_model(tmp_path / "run" / "last").state_dict()
    encoder = [name for name in before if name.startswith("visual.") and not name.startswith("visual.merger.")]
    assert encoder and all(torch.equal(before[name], after[name]) for name in encoder)
    for trained in ("visual.merger.", "language_model."):
        assert any(not torch.equal(before[name], after[name]) for name in before if name.startswith(trained))


def test_task_weights_change_the_mix_and_no_weights_draw_what_they_always_did(workspace):
    """A task weighted 4 against the rest's 1 is drawn far more often than without weights; a
    weight of 0 never; weights all alike draw exactly the batches of no weights."""
    from training.train import step_rows

    root, tokenizer = workspace
    cache = ClipCache(root / "cache")
    specs = [ClipSpec("pickplace", 3, duration_s=6.0)]
    stage = dataclasses.replace(STAGE, examples_per_step=8, clips={"pickplace": 1})

    def tasks_drawn(**weights):
        config = dataclasses.replace(stage, task_weights=weights)
        return [[e.qa.task for row in step_rows(config, specs, ["codec"], cache, tokenizer, 0, step) for e in row]
                for step in range(6)]

    plain = tasks_drawn()
    assert tasks_drawn(trace=1.0, caption=1.0) == plain
    share = lambda steps, task: np.mean([t == task for tasks in steps for t in tasks])
    assert share(tasks_drawn(trace=4.0), "trace") > 2 * share(plain, "trace") > 0
    assert share(plain, "caption") > 0 and share(tasks_drawn(caption=0.0), "caption") == 0
    with pytest.raises(ValueError, match="task_weights"):
        StageConfig(name="bad", task_weights={"trace": -1.0})
    with pytest.raises(ValueError, match="no question to draw"):
        StageConfig(name="bad", tasks=("trace",), task_weights={"trace": 0.0})


def test_a_stage_trains_on_its_variation_and_never_on_held_out_worlds():
    from training.train import clip_specs

    tinted = dataclasses.replace(STAGE, variation="train-tints", clips={"pickplace": 3})
    assert [spec.split for spec in clip_specs(tinted)] == ["train-tints"] * 3
    assert {spec.split for spec in clip_specs(STAGE)} == {"train"}
    for held_out in ("heldout", "heldout-background"):
        with pytest.raises(ValueError, match="variation"):
            StageConfig(name="bad", variation=held_out)


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_torchrun_runs_data_parallel_and_sharded_and_resumes(workspace, tmp_path, sharding):
    import subprocess
    import sys
    root, tokenizer = workspace
    config = dataclasses.asdict(dataclasses.replace(STAGE, name=sharding, steps=2, save_every=2, max_tokens=900,
                                                    fsdp=sharding == "fsdp"))
    stage = tmp_path / "stage.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "training.train",
               "--stage", str(stage), "--out", str(tmp_path / "run"), "--cache", str(root / "cache"),
               "--tokenizer", str(tokenizer.path), "--threads", "1"]
    for steps, extra in ((2, []), (3, ["--resume"])):
        stage.write_text(json.dumps({**config, "steps": steps}))
        done = subprocess.run(command + extra, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["steps"] == 3  # printed once, by rank 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())["step"] == 3
    load_model(tmp_path / "run" / "last")


def test_centring_removes_the_mean_vision_token_and_keeps_the_differences(workspace):
    root, tokenizer = workspace
    model = tiny_model(tokenizer, seed=5)
    cache, short = ClipCache(root / "cache"), {"bounce": (6.0, 6.0), "pickplace": (6.0, 6.0)}
    mean, stats = mean_vision_token(model, cache, 1, 4, short)
    assert stats["mean_norm"] > 0 and stats["centred_token_norm"] < stats["token_norm"]
    spec = ClipSpec("pickplace", 0, duration_s=6.0)
    vision = cache.vision(spec, "codec", 4)
    before = model.vision_tokens(vision_input_from(vision.canvases, vision.positions_thw))
    centre(model, mean)
    after = model.vision_tokens(vision_input_from(vision.canvases, vision.positions_thw))
    torch.testing.assert_close(after, before - mean, rtol=1e-4, atol=1e-4)
    assert mean_vision_token(model, cache, 1, 4, short)[1]["mean_norm"] < 1e-4 * stats["mean_norm"] + 1e-5
    # Sampled frames' tokens share another mean: each input is centred on its own.
    assert mean_vision_token(model, cache, 1, 4, short, input_mode="frames")[1]["mean_norm"] > 0.1 * stats["mean_norm"]


def test_added_merger_positions_tell_blocks_apart_by_where_they_are_and_survive_saving(workspace, tmp_path):
    root, tokenizer = workspace
    model = tiny_model(tokenizer, seed=6)
    grown = add_merger_positions(model, 16, norm=3.0)
    vision = ClipCache(root / "cache").vision(ClipSpec("stills", 2, duration_s=1.0), "codec", 4)
    inputs = vision_input_from(vision.canvases, vision.positions_thw)
    added = grown.vision_tokens(inputs) - model.vision_tokens(inputs)  # what the positions add, per token
    merger = grown.visual.merger
    table = merger.pos_emb_h.weight[:, None] + merger.pos_emb_w.weight[None]  # (h, w, out)
    assert torch.allclose(table.norm(dim=-1), torch.tensor(3.0))
    blocks = np.concatenate(vision.positions_thw).reshape(-1, 4, 3)[:, 0]
    blocks = blocks[blocks[:, 0] >= 0] // 2  # (tokens, 3) block (t, h, w)
    torch.testing.assert_close(added, table[blocks[:, 1], blocks[:, 2]], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(table[2, 3], table[3, 2], atol=0.1)  # rows and columns are told apart
    save_model(grown, tmp_path / "grown", tokenizer.path)
    again = load_model(tmp_path / "grown")
    assert again.config.encoder.merger_position_embeddings == 16
    torch.testing.assert_close(again.vision_tokens(inputs), grown.vision_tokens(inputs))


def test_centring_during_training_keeps_the_shared_vision_component_down(workspace, tmp_path):
    """A model whose vision tokens share a large component: trained with centre_vision_momentum
    the component shrinks step by step; without, it stays."""
    root, tokenizer = workspace
    model = tiny_model(tokenizer, seed=7)
    with torch.no_grad():
        model.visual.merger.mlp[2].bias += 30.0
    save_model(model, tmp_path / "shared", tokenizer.path)
    cache = ClipCache(root / "cache")
    short = {"bounce": (6.0, 6.0), "pickplace": (6.0, 6.0)}
    shared = lambda folder: mean_vision_token(load_model(folder), cache, 1, 4, short)[1]["mean_norm"]
    start = shared(tmp_path / "shared")
    for momentum, name in ((0.5, "centred"), (0.0, "plain")):
        stage = dataclasses.replace(STAGE, steps=5, save_every=5, centre_vision_momentum=momentum)
        train_stage(stage, tmp_path / name, str(tmp_path / "shared"), root / "cache", tokenizer_path=tokenizer.path,
                    threads=1, progress=False)
    assert shared(tmp_path / "centred" / "last") < 0.1 * start < 0.8 * shared(tmp_path / "plain" / "last")



def test_attention_gains_are_scaled_once_and_a_resumed_run_matches_a_straight_one(workspace, tmp_path):
    root, tokenizer = workspace
    save_model(tiny_model(tokenizer, seed=9), tmp_path / "init", tokenizer.path)
    gains = lambda model: [(a.q_norm.weight.clone(), a.k_norm.weight.clone())
                           for a in (layer.self_attn for layer in model.language_model.layers)]
    before = gains(load_model(tmp_path / "init"))
    stage = dataclasses.replace(STAGE, steps=4, save_every=2, lr=1e-9, lr_min=1e-9, qk_norm_scale=2.0)
    straight = train_stage(stage, tmp_path / "straight", str(tmp_path / "init"), root / "cache",
                           tokenizer_path=tokenizer.path, threads=1, progress=False)
    for (q0, k0), (q1, k1) in zip(before, gains(load_model(straight["model"]))):
        torch.testing.assert_close(q1, 2 * q0, rtol=1e-3, atol=1e-4)  # lr ~0: only the scaling moved them
        torch.testing.assert_close(k1, 2 * k0, rtol=1e-3, atol=1e-4)
    train_stage(dataclasses.replace(stage, steps=2), tmp_path / "resumed", str(tmp_path / "init"), root / "cache",
                tokenizer_path=tokenizer.path, threads=1, progress=False)
    train_stage(stage, tmp_path / "resumed", str(tmp_path / "init"), root / "cache", tokenizer_path=tokenizer.path,
                threads=1, resume=True, progress=False)
    for (q1, _), (q2, _) in zip(gains(load_model(straight["model"])), gains(load_model(tmp_path / "resumed" / "last"))):
        torch.testing.assert_close(q2, q1)  # not scaled again on resuming


def test_the_stills_suite_asks_about_the_shots_of_the_world_chosen(workspace, tmp_path):
    """`ov2 eval --suite stills --stills-world closeup`: one thing per close-up shot, each asked
    for its box and a point; a world that is not a still's is refused by name."""
    from training.evaluate import Evaluator

    root, tokenizer = workspace
    save_model(tiny_model(tokenizer, seed=3), tmp_path / "model", tokenizer.path)
    result = Evaluator(tmp_path / "model", root / "cache", budget=4, progress=False, variation="train",
                       stills_world="closeup").stills(2)
    assert result["clips"] == 2 and result["things"] == 2  # stills of 2-4 objects and a plate would give >= 6
    assert 0.0 <= result["box_accuracy@0.5"] <= 1.0
    with pytest.raises(ValueError, match="stills world"):
        Evaluator(tmp_path / "model", root / "cache", progress=False, stills_world="bounce")


def test_teacher_forced_answer_nats_are_the_training_loss_of_the_chosen_tokens(workspace, tmp_path):
    """ov2 eval's teacher-forced measure: the loss training gives each answer token, picked by
    character spans (a point's x and y digits: one token per digit)."""
    from training.data import encode_example
    from training.evaluate import Evaluator
    from training.tasks import POINT_WORDINGS, thing_point
    from training.train import batch_loss

    root, tokenizer = workspace
    save_model(tiny_model(tokenizer, seed=3), tmp_path / "model", tokenizer.path)
    evaluator = Evaluator(tmp_path / "model", root / "cache", progress=False)
    spec = ClipSpec("stills", 4, duration_s=1.0)
    _, truth = evaluator.cache.clip(spec)
    qa = thing_point(truth["episode"]["things"][1], FrameSize(160, 120), POINT_WORDINGS[0])
    coords = qa.answer.split('"')[1].split()  # t, id, x, y
    x_start = qa.answer.index(f" {coords[2]} {coords[3]}") + 1
    y_start = x_start + len(coords[2]) + 1
    digits = evaluator.answer_nats(spec, qa, [(x_start, x_start + len(coords[2])), (y_start, y_start + len(coords[3]))])
    assert len(digits) == len(coords[2]) + len(coords[3])
    whole = evaluator.answer_nats(spec, qa, [(0, len(qa.answer))])
    assert len(whole) == len(tokenizer.encode(qa.answer))
    example = encode_example(tokenizer, evaluator.cache.vision(spec, "codec", 4), qa, spec)
    example.labels[-1] = IGNORE  # <|im_end|> is not part of the answer's text
    with torch.no_grad():
        expected = batch_loss(evaluator.backend.model, pack([example]))
    assert np.mean(whole) == pytest.approx(float(expected), rel=1e-5)
    assert set(np.round(digits, 6)) <= set(np.round(whole, 6))


def test_ridge_read_out_scores_linear_information_and_not_noise():
    from training.readout import ridge_r2

    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, 16))
    target = np.c_[features @ rng.normal(size=16) + 3.0, rng.normal(size=400)]  # linear; noise
    linear, noise = ridge_r2(features, target, 1.0)
    assert linear > 0.99 and abs(noise) < 0.1


def test_vision_tokens_tell_where_they_are_only_with_merger_positions(workspace, tmp_path):
    """The read-out behind the pointing diagnosis (training/readout.py): the encoder's relative
    RoPE leaves a block's place out of its token; OV2's merger positions write it in. Its label
    words' loss changes with another shot's pixels unless the model is blind."""
    from training.readout import readout

    root, tokenizer = workspace
    plain = tiny_model(tokenizer, seed=4)
    save_model(plain, tmp_path / "plain", tokenizer.path)
    save_model(add_merger_positions(plain, 64, norm=4.0), tmp_path / "positions", tokenizer.path)
    with torch.no_grad():  # every vision token the same, whatever the pixels
        plain.visual.merger.mlp[2].weight.zero_()
    save_model(plain, tmp_path / "blind", tokenizer.path)
    scores = {name: readout(str(tmp_path / name), "lone", 12, root / "cache", progress=False)
              for name in ("plain", "positions", "blind")}
    assert min(scores["positions"]["vision_tokens_to_block_rc_r2"]) > 0.9
    assert max(scores["plain"]["vision_tokens_to_block_rc_r2"]) < 0.5
    for kind in ("colour", "shape"):
        blind, looking = scores["blind"]["label_word_nats"][kind], scores["positions"]["label_word_nats"][kind]
        assert blind["own_video"] == blind["other_video"] and looking["own_video"] != looking["other_video"], kind


def test_attention_rows_are_the_probabilities_the_llm_attends_with(workspace):
    """readout's attention probe: per layer, probabilities over the row's own segment only
    (packed), summing to 1, which weight the layer's values into exactly the attention output."""
    from training.readout import attention_rows

    root, tokenizer = workspace
    model = tiny_model(tokenizer, seed=6).eval()
    cache = ClipCache(root / "cache")
    examples = [e for seed in (4, 5) for e in examples_for_clip(
        cache, tokenizer, ClipSpec("lone", seed, duration_s=1.0), "codec", 4, np.random.default_rng(seed), ("caption",))]
    batch = pack(examples)
    first_length = len(examples[0].input_ids)
    rows = [first_length - 1, first_length + 10, batch.input_ids.shape[1] - 1]
    tokens = model.vision_tokens(batch.vision)
    inputs, outputs = [], []
    attention = model.language_model.layers[1].self_attn
    hooks = [attention.register_forward_pre_hook(lambda module, args: inputs.append(args)),
             attention.register_forward_hook(lambda module, args, out: outputs.append(out))]
    with torch.no_grad():
        probabilities, _ = attention_rows(model, batch.input_ids, tokens, batch.segment_ids, rows)
        for hook in hooks:
            hook.remove()
        x, rope = inputs[0][:2]
        _, _, v = attention.queries_keys_values(x, rope)
        values = v.repeat_interleave(probabilities.shape[1] // v.shape[1], dim=1)[0]  # (H, L, hd)
        weighted = probabilities[1] @ values  # (H, rows, hd)
        expected = attention.o_proj(weighted.transpose(0, 1).reshape(len(rows), -1))
    assert probabilities.shape == (len(model.language_model.layers), 4, len(rows), batch.input_ids.shape[1])
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(probabilities.shape[:3]))
    assert float(probabilities[:, :, 0, first_length:].abs().max()) == 0.0  # not the next example
    assert float(probabilities[:, :, 1, :first_length].abs().max()) == 0.0  # not the one before
    torch.testing.assert_close(expected, outputs[0][0, rows], rtol=1e-4, atol=1e-5)


def test_label_words_are_found_in_a_listing_of_a_stills_things():
    from training.readout import label_word_spans

    things = [{"label": "red plate", "centre_xy": [90, 50]}, {"label": "blue cylinder", "centre_xy": [20, 60]},
              {"label": "red cube", "centre_xy": [140, 70]}]
    answer = table_listing(things, TABLE_WORDINGS[0]).answer
    assert answer == "From left to right: a blue cylinder, a red plate, a red cube."
    spans = label_word_spans(answer, [t["label"] for t in things])  # plates have no shape word: left out
    assert [answer[a:b] for a, b in spans["colour"]] == [" blue", " red"]
    assert [answer[a:b] for a, b in spans["shape"]] == [" cylinder", " cube"]


def test_video_reliance_tells_a_blind_model_from_one_that_looks(workspace, tmp_path):
    """ov2 eval's `video_reliance`: another clip's pixels in place of a clip's own change the
    answers' loss of a model that reads its vision tokens, and leave a blind one's unchanged."""
    from training.evaluate import Evaluator

    root, tokenizer = workspace
    looking = tiny_model(tokenizer, seed=5)
    blind = tiny_model(tokenizer, seed=5)
    with torch.no_grad():  # every vision token the same, whatever the pixels
        blind.visual.merger.mlp[2].weight.zero_()
    for name, model in (("looking", looking), ("blind", blind)):
        save_model(model, tmp_path / name, tokenizer.path)
    # Close-ups: a thing fills half of each shot, so two shots' pixels differ enough for an
    # untrained model's loss to show it (on `stills` the things are small and the difference
    # is within the report's 3 decimals).
    scores = {name: Evaluator(tmp_path / name, root / "cache", budget=4, progress=False).video_reliance("closeup", 3)
              for name in ("looking", "blind")}
    assert set(scores["blind"]) == {"box", "point", "caption"}
    for task, pair in scores["blind"].items():
        assert pair["own_video"] == pytest.approx(pair["other_video"], abs=1e-6), task
    assert sum(abs(p["own_video"] - p["other_video"]) for p in scores["looking"].values()) > 1e-3


def test_jumpscore_and_trace_with_another_clips_pixels_are_what_a_blind_model_scores(workspace, tmp_path):
    """The study's `mAP_other_pixels` and the trace suite's `observed_*_other_pixels`: each clip
    answered with the next clip's pixels in place of its own (the last with the first's); a
    blind model answers exactly as with its own."""
    from training.evaluate import Evaluator

    root, tokenizer = workspace
    blind = tiny_model(tokenizer, seed=5)
    with torch.no_grad():
        blind.visual.merger.mlp[2].weight.zero_()  # every vision token the same, whatever the pixels
    save_model(blind, tmp_path / "blind", tokenizer.path)
    evaluator = Evaluator(tmp_path / "blind", root / "cache", budget=4, progress=False, variation="train")
    own, other = (evaluator.jumpscore(2, other_pixels=flag) for flag in (False, True))
    clips = [s["clip"] for s in own["samples"]]
    assert [s["pixels_of"] for s in own["samples"]] == clips
    assert [s["pixels_of"] for s in other["samples"]] == clips[1:] + clips[:1]
    assert [s["predicted"] for s in own["samples"]] == [s["predicted"] for s in other["samples"]]
    assert own["mAP"] == other["mAP"]
    # The trace suite asks the observed trace with the next clip's pixels too: the same for a blind model.
    trace = evaluator.trace(2)
    assert trace["observed_ADE_other_pixels"] == trace["observed_ADE"]
    assert trace["observed_FDE_other_pixels"] == trace["observed_FDE"]
    traced = [c["clip"] for c in trace["per_clip"]]
    assert [c["pixels_of"] for c in trace["per_clip"]] == traced[1:] + traced[:1]
