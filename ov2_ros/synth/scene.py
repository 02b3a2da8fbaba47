"""Deterministic synthetic camera scenes with exact ground truth: a textured table seen from
above, objects of several colours and shapes moving on it, a two-finger gripper moving among
them, sensor noise and a lighting change. Every frame and every label follows from the seed.

Ground truth per frame: each object's box and the gripper's position, in pixels (x right,
y down; boxes are [x_min, y_min, x_max, y_max], clipped to the image).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator

import cv2
import numpy as np

COLOURS_RGB = {
    "red": (200, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 70, 200),
    "yellow": (220, 200, 40),
    "orange": (230, 120, 30),
    "purple": (130, 50, 160),
}
SHAPES = ("cube", "cylinder", "prism")


@dataclass(frozen=True)
class SceneConfig:
    """What the synthetic camera sees. Sizes are in pixels, times in seconds."""

    width: int = 640
    height: int = 480
    fps: float = 30.0
    duration_s: float = 10.0
    seed: int = 0
    num_objects: int = 3
    noise_sigma: float = 2.0  # sensor noise, grey levels
    lighting_change_s: float | None = None  # when the light dims; None: at 60% of the clip
    lighting_gain: float = 0.7  # brightness after the change (1.0 = no change)

    def __post_init__(self):
        if self.width < 64 or self.height < 64:
            raise ValueError(f"width/height must be >= 64, got {self.width}x{self.height}")
        if self.duration_s <= 0 or self.fps <= 0:
            raise ValueError(f"duration_s and fps must be positive, got {self.duration_s}, {self.fps}")
        if not 1 <= self.num_objects <= 8:
            raise ValueError(f"num_objects must be in 1..8, got {self.num_objects}")
        if self.noise_sigma < 0:
            raise ValueError(f"noise_sigma must be >= 0, got {self.noise_sigma}")
        if not 0.2 <= self.lighting_gain <= 2.0:
            raise ValueError(f"lighting_gain must be in [0.2, 2.0], got {self.lighting_gain}")

    @property
    def frame_count(self) -> int:
        return int(round(self.duration_s * self.fps))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Path:
    """A piecewise-linear path through random waypoints, traversed at constant speed, with
    rests at each waypoint. position(t) -> (x, y)."""

    waypoints: np.ndarray  # (N, 2) pixels
    times: np.ndarray  # (2N,) arrival and departure time at each waypoint, seconds

    def position(self, t: float) -> np.ndarray:
        x = np.interp(t, self.times, np.repeat(self.waypoints[:, 0], 2))
        y = np.interp(t, self.times, np.repeat(self.waypoints[:, 1], 2))
        return np.array([x, y])


def _random_path(rng, duration, low, high, speed_px_s, rest_s) -> _Path:
    points = [rng.uniform(low, high)]
    times = [0.0, rng.uniform(0, rest_s)]
    while times[-1] < duration:
        nxt = rng.uniform(low, high)
        travel = float(np.linalg.norm(nxt - points[-1])) / speed_px_s
        points.append(nxt)
        times += [times[-1] + travel, times[-1] + travel + rng.uniform(0, rest_s)]
    return _Path(np.array(points), np.array(times))


def table_texture(rng, width, height) -> np.ndarray:
    """Wood-like table (grain and blotches) with a wall strip at the top. (H, W, 3) float32."""
    blotches = cv2.resize(rng.normal(0, 1, (height // 32 + 2, width // 32 + 2)).astype(np.float32),
                          (width, height), interpolation=cv2.INTER_CUBIC)
    warp = cv2.resize(rng.normal(0, 1, (height // 64 + 2, 4)).astype(np.float32), (width, height),
                      interpolation=cv2.INTER_CUBIC)
    ys = np.arange(height, dtype=np.float32)[:, None]
    grain = np.sin(ys * 0.35 + 6.0 * warp) + 0.5 * np.sin(ys * 1.3 + 3.0 * warp)
    shade = 1.0 + 0.06 * blotches + 0.05 * grain
    image = np.empty((height, width, 3), np.float32)
    for channel, base in enumerate((150.0, 110.0, 75.0)):
        image[..., channel] = base * shade
    wall = int(0.12 * height)
    image[:wall] = (185.0, 185.0, 180.0)
    image[wall : wall + 3] = (60.0, 45.0, 35.0)
    return image


@dataclass(frozen=True)
class _SceneObject:
    object_id: int
    colour: str
    shape: str
    size_px: float
    path: _Path

    @property
    def label(self) -> str:
        return f"{self.colour} {self.shape}"


class RenderedFrames:
    """A scene or world that renders frame `index` of `config.frame_count` (`render`)."""

    def frames(self) -> Iterator[tuple[np.ndarray, dict]]:
        """(image (H, W, 3) uint8 RGB, ground truth dict) for every frame, in order."""
        for index in range(self.config.frame_count):
            yield self.render(index)


def light_ramp(t: float, start_s: float, ramp_s: float, gain: float) -> float:
    """Brightness at time t: 1 until start_s, then a linear ramp over ramp_s to `gain`."""
    return 1.0 + float(np.clip((t - start_s) / ramp_s, 0.0, 1.0)) * (gain - 1.0)


class SyntheticScene(RenderedFrames):
    """Renders frames and ground truth for a SceneConfig.

    >>> scene = SyntheticScene(SceneConfig(seed=3))
    >>> for image_rgb, truth in scene.frames(): ...
    """

    def __init__(self, config: SceneConfig):
        self.config = config
        rng = np.random.default_rng(config.seed)
        w, h = config.width, config.height
        self._background = table_texture(rng, w, h)
        table_top = 0.12 * h
        unit = min(w, h)
        colours = rng.permutation(list(COLOURS_RGB))
        self._objects = []
        for index in range(config.num_objects):
            size = rng.uniform(0.08, 0.13) * unit
            margin = np.array([size, table_top + size])
            path = _random_path(rng, config.duration_s, margin, np.array([w - size, h - size]),
                                speed_px_s=rng.uniform(0.05, 0.2) * unit, rest_s=2.0)
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            self._objects.append(_SceneObject(index, str(colours[index % len(colours)]), shape, size, path))
        self._gripper = _random_path(rng, config.duration_s, np.array([0.15 * w, 0.3 * h]),
                                     np.array([0.85 * w, 0.9 * h]), speed_px_s=0.35 * unit, rest_s=0.8)
        self._gripper_phase = rng.uniform(0, 2 * np.pi)
        self._noise_seed = int(rng.integers(2**31))

    def lighting_gain(self, t: float) -> float:
        """1 before the change, ramping over 0.5 s to `lighting_gain`."""
        config = self.config
        start = 0.6 * config.duration_s if config.lighting_change_s is None else config.lighting_change_s
        return light_ramp(t, start, 0.5, config.lighting_gain)

    def render(self, index: int) -> tuple[np.ndarray, dict]:
        config = self.config
        t = index / config.fps
        canvas = self._background.copy()
        objects = [self._draw_object(canvas, obj, t) for obj in self._objects]
        gripper = self._draw_gripper(canvas, t)
        gain = self.lighting_gain(t)
        canvas *= gain
        if config.noise_sigma > 0:
            noise_rng = np.random.default_rng([self._noise_seed, index])
            canvas += noise_rng.normal(0.0, config.noise_sigma, canvas.shape).astype(np.float32)
        image = np.clip(canvas, 0, 255).astype(np.uint8)
        truth = {"frame": index, "time_s": round(t, 6), "objects": objects, "gripper": gripper,
                 "lighting_gain": round(gain, 6)}
        return image, truth

    def _clip_box(self, x0, y0, x1, y1) -> list[float]:
        w, h = self.config.width, self.config.height
        return [round(float(np.clip(x0, 0, w)), 2), round(float(np.clip(y0, 0, h)), 2),
                round(float(np.clip(x1, 0, w)), 2), round(float(np.clip(y1, 0, h)), 2)]

    def _draw_object(self, canvas: np.ndarray, obj: _SceneObject, t: float) -> dict:
        cx, cy = obj.path.position(t)
        half = obj.size_px / 2
        colour = np.array(COLOURS_RGB[obj.colour], np.float32)
        shadow = (cx + 0.15 * half, cy + 0.15 * half)
        if obj.shape == "cube":
            corners = np.array([[cx - half, cy - half], [cx + half, cy + half]])
            cv2.rectangle(canvas, subpixel_point(corners[0] + 0.15 * half), subpixel_point(corners[1] + 0.15 * half),
                          (40, 30, 25), -1, cv2.LINE_AA, 4)
            cv2.rectangle(canvas, subpixel_point(corners[0]), subpixel_point(corners[1]), colour.tolist(), -1, cv2.LINE_AA, 4)
            cv2.rectangle(canvas, subpixel_point(corners[0] + 0.25 * half), subpixel_point(corners[1] - 0.25 * half),
                          (colour * 1.15).clip(0, 255).tolist(), -1, cv2.LINE_AA, 4)
            box = (cx - half, cy - half, cx + half, cy + half)
        elif obj.shape == "cylinder":
            cv2.circle(canvas, subpixel_point(shadow), int(half * 16), (40, 30, 25), -1, cv2.LINE_AA, 4)
            cv2.circle(canvas, subpixel_point((cx, cy)), int(half * 16), colour.tolist(), -1, cv2.LINE_AA, 4)
            cv2.circle(canvas, subpixel_point((cx, cy)), int(half * 10), (colour * 0.8).tolist(), 2, cv2.LINE_AA, 4)
            box = (cx - half, cy - half, cx + half, cy + half)
        else:  # prism: an upward triangle
            tri = np.array([[cx, cy - half], [cx + half, cy + half], [cx - half, cy + half]])
            cv2.fillPoly(canvas, [np.round((tri + 0.15 * half) * 16).astype(np.int32)], (40, 30, 25), cv2.LINE_AA, 4)
            cv2.fillPoly(canvas, [np.round(tri * 16).astype(np.int32)], colour.tolist(), cv2.LINE_AA, 4)
            box = (cx - half, cy - half, cx + half, cy + half)
        return {"id": obj.object_id, "label": obj.label, "colour": obj.colour, "shape": obj.shape,
                "box_xyxy": self._clip_box(*box)}

    def _draw_gripper(self, canvas: np.ndarray, t: float) -> dict:
        """An arm from the top edge down to a palm with two fingers; (x, y) is the point midway
        between the fingertips, where a grasped object would be."""
        unit = min(self.config.width, self.config.height)
        x, y = self._gripper.position(t)
        opening = (0.05 + 0.03 * (1 + np.sin(2 * np.pi * 0.4 * t + self._gripper_phase))) * unit
        finger_len, finger_w, palm_h = 0.09 * unit, 0.022 * unit, 0.03 * unit
        palm_y = y - finger_len
        grey, dark = (170, 172, 178), (90, 92, 98)
        cv2.rectangle(canvas, subpixel_point((x - 0.018 * unit, 0)), subpixel_point((x + 0.018 * unit, palm_y)), dark, -1, cv2.LINE_AA, 4)
        cv2.rectangle(canvas, subpixel_point((x - opening / 2 - finger_w, palm_y - palm_h)),
                      subpixel_point((x + opening / 2 + finger_w, palm_y)), grey, -1, cv2.LINE_AA, 4)
        for side in (-1, 1):
            inner = x + side * opening / 2
            outer = inner + side * finger_w
            cv2.rectangle(canvas, subpixel_point((min(inner, outer), palm_y)), subpixel_point((max(inner, outer), y)), grey, -1, cv2.LINE_AA, 4)
        box = self._clip_box(x - opening / 2 - finger_w, palm_y - palm_h, x + opening / 2 + finger_w, y)
        return {"x": round(float(x), 2), "y": round(float(y), 2), "opening_px": round(float(opening), 2),
                "box_xyxy": box}


def subpixel_point(xy) -> tuple[int, int]:
    """A point in 1/16 pixel fixed point (cv2 drawing with shift=4), for sub-pixel motion."""
    return int(round(float(xy[0]) * 16)), int(round(float(xy[1]) * 16))
