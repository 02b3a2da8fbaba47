"""Worlds match their ground truth, reproducibly; held-out worlds differ from training ones."""
import numpy as np
import pytest

from ov2_ros.synth.scene import COLOURS_RGB
from ov2_ros.synth.worlds import (BACKGROUNDS, HELDOUT_COLOURS, HELDOUT_TINT_MARGIN, REST_S, TINT_RANGE, TRAIN_COLOURS,
                                  UNSEEN_FACTORS, BounceWorld, CloseUpWorld, LoneThingWorld, MidWorld, PickPlaceWorld,
                                  StillsWorld, Variation, WorldConfig)


def _colour_at(image, box):
    x0, y0, x1, y1 = box
    cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
    return image[cy - 1:cy + 2, cx - 1:cx + 2].reshape(-1, 3).mean(axis=0)


def test_the_ball_is_where_its_box_says_and_leaves_the_floor_at_the_event_times():
    world = BounceWorld(WorldConfig(seed=4, noise_sigma=0.0))
    events = world.event_times_s
    assert len(events) >= 8 and all(b - a >= 0.2 for a, b in zip(events, events[1:]))
    colour = np.array(COLOURS_RGB[world.colour], float)
    for index in range(0, world.config.frame_count, 7):
        image, truth = world.render(index)
        assert np.abs(_colour_at(image, truth["ball_box_xyxy"]) - colour).max() < 25
    fps = world.config.fps
    for start in events[:5]:
        before, after = int(np.floor(start * fps)), int(np.floor(start * fps)) + 2
        assert not world.render(before - 1)[1]["airborne"] and world.render(after)[1]["airborne"]


def test_bounces_come_in_bursts_with_rests_that_a_blind_list_of_times_cannot_fit():
    """The ball rests on the floor between bursts (no takeoff, not airborne), so a list of times
    at any fixed period, the best a model blind to the ball can do, scores far below a reader."""
    from training import metrics
    from training.evaluate import heldout_clips
    from training.study import best_periodic_list

    world = BounceWorld(WorldConfig(seed=4, duration_s=30.0, noise_sigma=0.0))
    events = world.event_times_s
    rests = [(a, b) for a, b in zip(events, events[1:]) if b - a >= REST_S[0]]
    assert len(rests) >= 2
    for a, b in rests:
        frames = range(int(np.ceil((a + 1.0) * world.config.fps)), int(b * world.config.fps))
        assert frames and not any(world.render(i)[1]["airborne"] for i in frames[::5])
    specs = heldout_clips("bounce", 12, (10.0, 30.0))
    truths = [spec.world_object().event_times_s for spec in specs]
    assert best_periodic_list([spec.duration_s for spec in specs], truths)["mAP"] < 45
    assert metrics.jumpscore(truths, truths) == 100.0


def test_pick_and_place_boxes_segments_and_path_agree_with_the_pixels():
    world = PickPlaceWorld(WorldConfig(seed=2, noise_sigma=0.0))
    phases = [s["phase"] for s in world.segments]
    assert phases == ["reach", "grasp", "lift", "carry", "place", "release", "retreat"]
    assert all(a["end_s"] == b["start_s"] for a, b in zip(world.segments, world.segments[1:]))
    target = world.label(world.target)
    for index in range(0, world.config.frame_count, 9):
        image, truth = world.render(index)
        gx, gy = truth["gripper"]["x"], truth["gripper"]["y"]
        for obj in truth["objects"]:
            x0, y0, x1, y1 = obj["box_xyxy"]
            if abs(gx - (x0 + x1) / 2) < 14 and gy > (y0 + y1) / 2 - 14:
                continue  # seen from above, the arm or the fingers cover its centre
            colour = np.array(COLOURS_RGB[obj["label"].split()[0]], float)
            assert np.abs(_colour_at(image, obj["box_xyxy"]) - colour).max() < 40, (index, obj)
    # After the episode the target sits on the plate.
    _, last = world.render(world.config.frame_count - 1)
    box = next(o["box_xyxy"] for o in last["objects"] if o["label"] == target)
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    assert np.linalg.norm(centre - world.plate["centre"]) < 1.0
    path = world.gripper_path()
    assert np.allclose(path[0], world.home, atol=1) and np.allclose(path[-1], world.home, atol=2)


def test_pick_and_place_camera_shakes_the_light_changes_and_the_truth_follows_the_image():
    world = PickPlaceWorld(WorldConfig(seed=7, noise_sigma=0.0))
    offsets = np.array([world.render(i)[1]["camera_offset_xy"] for i in range(0, 90, 3)])
    assert np.ptp(offsets, axis=0).min() > 0.2 and np.abs(offsets).max() <= 1.0  # up to a pixel at 160x120
    start, gain = world._light
    fps = world.config.fps
    before, after = world.render(int((start - 0.2) * fps))[0], world.render(int((start + 0.5) * fps))[0]
    floor = slice(-5, None)  # below every object: only the table's brightness changes there
    assert before[floor].mean() * gain == pytest.approx(after[floor].mean(), rel=0.05)
    # The gripper's truth is in the shaken image: the arm (grey, from the top edge) is centred
    # where the truth says, not where the still camera would see it. 640x480: shakes of pixels.
    large = PickPlaceWorld(WorldConfig(width=640, height=480, seed=7, noise_sigma=0.0))
    index = max(range(0, 60), key=lambda i: abs(large.camera_offset(i / fps)[0]))
    image, truth = large.render(index)
    assert abs(truth["camera_offset_xy"][0]) > 1.5
    row = image[int(truth["gripper"]["y"] * 0.6)].astype(float)
    arm = np.abs(row - np.array([90, 92, 98])).max(axis=1) < 12
    centre = float(np.mean(np.nonzero(arm)[0])) + 0.5  # pixel i covers [i, i + 1)
    assert abs(centre - truth["gripper"]["x"]) < 0.5
    assert abs(centre - large.state(index / fps)["gripper"][0]) > 1.0


def test_still_shots_show_each_thing_where_its_box_says_and_nothing_moves():
    counts = set()
    for seed in range(12):
        world = StillsWorld(WorldConfig(seed=seed, duration_s=1.0, noise_sigma=0.0))
        first, truth = world.render(0)
        things = truth["objects"]
        counts.add(len(things) - 1)
        assert len({t["label"] for t in things}) == len(things)  # a question names one thing
        assert things[0]["label"].endswith(" plate")
        for thing in things:
            x0, y0, x1, y1 = thing["box_xyxy"]
            assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 120
            assert np.allclose(thing["centre_xy"], [(x0 + x1) / 2, (y0 + y1) / 2], atol=0.02)
            if thing is things[0]:
                continue  # objects may stand on the plate's rim; the plate is checked through them
            colour = np.array(COLOURS_RGB[thing["label"].split()[0]], float)
            assert np.abs(_colour_at(first, thing["box_xyxy"]) - colour).max() < 40, (seed, thing)
        last, last_truth = world.render(world.config.frame_count - 1)
        assert np.array_equal(first, last) and last_truth["objects"] == things
    assert counts == {2, 3, 4}
    noisy = StillsWorld(WorldConfig(seed=0, duration_s=1.0))
    assert not np.array_equal(noisy.render(0)[0], noisy.render(1)[0])  # sensor noise per frame


def _table_deviation_outside(image, box) -> float:
    """Largest difference from the table's median colour outside `box` (and its shadow), below
    the wall: wood grain alone stays under 60 grey levels."""
    x0, y0, x1, y1 = box
    shadow = 2 + int(0.2 * max(x1 - x0, y1 - y0))  # cast down-right by 15% of the object's side
    rest = image.astype(float)
    rest[max(0, int(y0) - 2):int(y1) + shadow, max(0, int(x0) - 2):int(x1) + shadow] = np.nan
    table = rest[int(0.15 * image.shape[0]) + 2:]
    return float(np.nanmax(np.abs(table - np.nanmedian(table, axis=(0, 1)))))


@pytest.mark.parametrize("kind, side_share", [(LoneThingWorld, (0.08, 0.2)), (MidWorld, (0.24, 0.32)),
                                              (CloseUpWorld, (0.4, 0.56))])
def test_a_lone_thing_shot_shows_one_object_where_its_box_says_and_nothing_else(kind, side_share):
    for seed in range(8):
        world = kind(WorldConfig(seed=seed, duration_s=1.0, noise_sigma=0.0))
        image, truth = world.render(0)
        (thing,) = truth["objects"]
        colour = np.array(COLOURS_RGB[thing["label"].split()[0]], float)
        assert np.abs(_colour_at(image, thing["box_xyxy"]) - colour).max() < 40, (seed, thing)
        assert _table_deviation_outside(image, thing["box_xyxy"]) < 60, seed
        x0, y0, x1, y1 = thing["box_xyxy"]  # its side, of the frame's shorter side
        assert side_share[0] - 0.01 <= max(x1 - x0, y1 - y0) / min(image.shape[:2]) <= side_share[1] + 0.01, seed
    # The same measure sees the other things of a busy still.
    busy, truth = StillsWorld(WorldConfig(seed=0, duration_s=1.0, noise_sigma=0.0)).render(0)
    assert _table_deviation_outside(busy, truth["objects"][1]["box_xyxy"]) > 60


@pytest.mark.parametrize("kind", [BounceWorld, PickPlaceWorld, StillsWorld])
def test_worlds_are_reproducible_and_held_out_ones_use_unseen_variations(kind):
    a, b = kind(WorldConfig(seed=9)), kind(WorldConfig(seed=9))
    assert np.array_equal(a.render(40)[0], b.render(40)[0]) and a.episode_truth() == b.episode_truth()
    train_colours = {kind(WorldConfig(seed=s)).episode_truth().get("object", "").split(" ")[0] for s in range(20)}
    if kind is BounceWorld:
        assert train_colours <= set(TRAIN_COLOURS)
        held = [BounceWorld(WorldConfig(seed=s, variation=Variation("heldout"))) for s in range(10)]
        assert all(w.colour in HELDOUT_COLOURS for w in held)
        assert max(w.rate_range[1] for w in held) > 3.0  # faster than any training clip
    elif kind is PickPlaceWorld:
        held = PickPlaceWorld(WorldConfig(seed=3, variation=Variation("heldout")))
        assert held.objects[0]["colour"] in HELDOUT_COLOURS
    else:
        seen = {t["label"].split()[0] for s in range(20) for t in StillsWorld(WorldConfig(seed=s)).things}
        assert seen <= set(TRAIN_COLOURS)
        held = StillsWorld(WorldConfig(seed=3, variation=Variation("heldout")))
        assert held.things[1]["label"].split()[0] in HELDOUT_COLOURS


@pytest.mark.parametrize("factor", UNSEEN_FACTORS)
def test_a_one_factor_split_leaves_only_that_factor_unseen(factor):
    variation = Variation(f"heldout-{factor}")
    draws = {name: [] for name in UNSEEN_FACTORS}
    for seed in range(30):
        rng = np.random.default_rng(seed)
        draws["colours"].append(variation.colours(rng, 1)[0])
        draws["background"].append(variation.background(rng))
        draws["speed"].append((variation.rate_hz(rng)[1], variation.gripper_speed(rng)))
    unseen = {"colours": all(c in HELDOUT_COLOURS for c in draws["colours"]),
              "background": all(b == BACKGROUNDS[-1] for b in draws["background"]),
              "speed": all(g >= 1.0 for _, g in draws["speed"]) and max(r for r, _ in draws["speed"]) > 3.0}
    seen = {"colours": set(draws["colours"]) <= set(TRAIN_COLOURS),
            "background": BACKGROUNDS[-1] not in draws["background"],
            "speed": all(g < 1.0 and r <= 3.0 for r, g in draws["speed"])}
    assert unseen[factor] and not seen[factor]
    assert all(seen[other] for other in UNSEEN_FACTORS if other != factor)
    # The worlds draw through it: an episode's first object has an unseen colour only in that split.
    episodes = [PickPlaceWorld(WorldConfig(seed=s, variation=variation)) for s in range(3)]
    assert all((e.objects[0]["colour"] in HELDOUT_COLOURS) == (factor == "colours") for e in episodes)
    with pytest.raises(ValueError, match="split"):
        Variation("heldout-shapes")


def test_training_tints_vary_but_never_come_near_the_held_out_tint():
    rng = np.random.default_rng(0)
    tints = np.array([Variation("train-tints").background(rng) for _ in range(500)])
    distance = np.linalg.norm(tints - np.array(BACKGROUNDS[-1]), axis=1)
    assert distance.min() >= HELDOUT_TINT_MARGIN
    assert distance.min() < HELDOUT_TINT_MARGIN + 10  # right up to the margin, not only the three tints
    assert len({tuple(t) for t in tints.round(1)}) == 500
    assert tints.min() >= TINT_RANGE[0] and tints.max() <= TINT_RANGE[1]
    # A world's table takes the tint: the same seed's table differs between the two training splits.
    plain, tinted = (PickPlaceWorld(WorldConfig(seed=5, variation=Variation(s))).render(0)[0] for s in ("train", "train-tints"))
    assert np.abs(plain.astype(int) - tinted.astype(int))[40:].mean() > 5


def test_evaluation_worlds_use_unseen_seeds_with_either_variation():
    from training.evaluate import HELDOUT_SEED, heldout_clips

    for variation, colours in (("heldout", HELDOUT_COLOURS), ("train", TRAIN_COLOURS)):
        specs = heldout_clips("bounce", 4, (10.0, 30.0), variation)
        assert all(spec.seed >= HELDOUT_SEED and spec.split == variation for spec in specs)
        assert all(spec.world_object().colour in colours for spec in specs)
    with pytest.raises(ValueError, match="variation"):
        heldout_clips("bounce", 1, (10.0, 30.0), "unseen")
