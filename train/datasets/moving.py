"""Moving digits over real footage, with MOTChallenge ground truth, for the streaming work.

Several real MNIST digits (each its own track id 1..K and class) move at constant velocity and
bounce off the frame edges and off each other (a step that would make two digits overlap by more
than 5% of the smaller one is undone and the digit turns back), over consecutive frames of the
split's background video (a fixed window of ``bigbuckbunny.mp4`` for test, ``bikes.mp4`` for
train/val, played forward then backward when the clip is longer than the video; with
``footage="held-out"``, ``carphone_pristine.mp4``, which no recipe trains on, for the val split). A
few fragments of other digits drift beneath them, as in the still benchmark.

Scale: a digit's stroke box's longer side is 28-40% of the frame's short side, so once the default
model stretch-resizes a (square) frame to 64x64 the digits have the training scale (25-60% of the
side) and three of them rarely meet. Colours follow the still benchmark's rule (luminance >= 60 away
from the mean luminance of the footage) and, since a digit crosses the whole frame, are the farthest
of 32 such candidates from the footage's own colours; contrast 0.7-1.0.

Outputs (all written atomically): ``moving_digits.mp4`` (H.264 yuv420p, MPEG-4 Part 2 where this
PyAV has no H.264 encoder), ``gt.txt`` in MOTChallenge text ``frame,id,x,y,w,h,1,1,1`` (frames
1-based; x, y, w, h the tight stroke box in 0-based pixel coordinates, x2 = x + w exclusive, the
same convention as our tracker output) and ``labels.json`` ({"track id": class index}).
Everything is a pure function of the arguments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from edge_xcnn.errors import BadData, MissingDependency
from edge_xcnn.fileio import atomic_output
from edge_xcnn.train.datasets.backgrounds import SCENE_EXTRA_SOURCES, SOURCES, held_out_video_frames, video_frames
from edge_xcnn.train.datasets.synthetic import (
    BACKGROUND_SPLIT,
    LUMA_WEIGHTS,
    MIN_LUMA_GAP,
    SPLIT_CODES,
    Box,
    Colour,
    Split,
    alpha_paste,
    digit_bank,
    digit_patch,
    fragment_patch,
    stroke_extent,
)
from edge_xcnn.video import open_video_stream

DIGIT_SIDE = (0.28, 0.40)  # of the frame's short side
SPEED = (1.0, 2.5)  # pixels per frame at a 256-pixel short side
FRAGMENT_SPEED = (0.3, 1.0)
CONTRAST = (0.7, 1.0)
MAX_DIGIT_OVERLAP = 0.05  # of the smaller digit's box
_MOVING_CODE = 7  # keeps the moving stream of random numbers apart from the still samples'


@dataclass(frozen=True)
class MovingDigitsResult:
    """What ``write_moving_digits`` wrote, and enough of how to check it."""

    video: Path
    gt: Path
    labels_path: Path
    labels: dict[int, int]  # track id -> class index
    colours: dict[int, Colour]  # track id -> stroke RGB
    digits: dict[int, int]  # track id -> index into load_mnist5k()
    frames: int
    size: tuple[int, int]  # (height, width)
    fps: int
    codec: str
    background: str
    boxes: np.ndarray = field(repr=False)  # frames x K x 4 xyxy, the ground truth as an array
    strokes: dict[int, np.ndarray] = field(repr=False)  # track id -> bool stroke mask inside its box


@dataclass
class _Mover:
    """A patch with a stroke box that drifts at constant velocity and bounces off the edges."""

    patch: np.ndarray
    extent: Box  # stroke box inside the patch
    pos: np.ndarray  # float (x, y) of the patch's top-left corner
    vel: np.ndarray
    colour: Colour
    contrast: float

    def box(self, pos: np.ndarray | None = None) -> Box:
        x, y = (round(v) for v in (self.pos if pos is None else pos))
        e = self.extent
        return x + e[0], y + e[1], x + e[2], y + e[3]

    def proposed(self, width: int, height: int) -> np.ndarray:
        """Next position, reflected off the frame edges so the stroke box stays inside."""
        pos = self.pos + self.vel
        e = self.extent
        for axis, lo, hi in ((0, -e[0], width - e[2]), (1, -e[1], height - e[3])):
            if pos[axis] < lo or pos[axis] > hi:
                self.vel[axis] = -self.vel[axis]
                pos[axis] = np.clip(pos[axis], lo, hi)
        return pos


def _overlap(a: Box, b: Box) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0)


def _area(b: Box) -> int:
    return (b[2] - b[0]) * (b[3] - b[1])


def _crowded(box: Box, others: list[Box], limit: float) -> bool:
    return any(_overlap(box, o) > limit * min(_area(box), _area(o)) for o in others)


def _random_pos(rng: np.random.Generator, extent: Box, width: int, height: int) -> np.ndarray:
    return np.array([rng.uniform(-extent[0], width - extent[2]), rng.uniform(-extent[1], height - extent[3])])


def _velocity(rng: np.random.Generator, speed: tuple[float, float], short: int) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return rng.uniform(*speed) * short / 256 * np.array([np.cos(angle), np.sin(angle)])


def _footage_colour(rng: np.random.Generator, pixels: np.ndarray) -> Colour:
    """A stroke colour that stands out everywhere the digit may go, not just on average.

    Among 32 random colours whose luminance is >= MIN_LUMA_GAP from the footage's mean (the still
    benchmark's rule), the one farthest from the footage's pixels (10th percentile RGB distance).
    """
    luma = float(pixels.mean(axis=0) @ LUMA_WEIGHTS)
    candidates = rng.integers(0, 256, size=(32, 3)).astype(np.float32)
    ok = np.abs(candidates @ LUMA_WEIGHTS - luma) >= MIN_LUMA_GAP
    if not ok.any():
        return (0, 0, 0) if luma >= 127.5 else (255, 255, 255)
    candidates = candidates[ok]
    dist = np.linalg.norm(candidates[:, None, :] - pixels[None, :, :], axis=2)
    best = candidates[int(np.argmax(np.percentile(dist, 10, axis=1)))]
    return (int(best[0]), int(best[1]), int(best[2]))


class _Footage:
    """A fixed window of the split's video, resized to the frame size, played forward then back."""

    def __init__(self, rng: np.random.Generator, split: Split, width: int, height: int, held_out: bool = False) -> None:
        if held_out:
            self.name, self.frames = SCENE_EXTRA_SOURCES[0][0], held_out_video_frames()
        else:
            self.name = SOURCES[BACKGROUND_SPLIT[split]][0]
            self.frames = video_frames(BACKGROUND_SPLIT[split])
        fh, fw = self.frames[0].shape[:2]
        wh = rng.uniform(0.7, 1.0) * min(fh, fw * height / width)
        ww = wh * width / height
        self.x, self.y = int(rng.uniform(0, fw - ww + 1)), int(rng.uniform(0, fh - wh + 1))
        self.w, self.h = max(1, int(ww)), max(1, int(wh))
        self.start = int(rng.integers(len(self.frames)))
        self.size = (width, height)

    def __call__(self, t: int) -> np.ndarray:
        n = len(self.frames)
        period = max(1, 2 * (n - 1))
        p = (self.start + t) % period
        frame = self.frames[p if p < n else period - p]
        window = frame[self.y : self.y + self.h, self.x : self.x + self.w]
        return cv2.resize(window, self.size, interpolation=cv2.INTER_LINEAR).astype(np.float32)


def write_moving_digits(
    out_dir: Path,
    *,
    split: Split = "test",
    frames: int = 150,
    size: tuple[int, int] = (256, 256),
    digits: int = 3,
    fps: int = 25,
    seed: int = 0,
    fragments: int = 3,
    footage: Literal["split", "held-out"] = "split",
) -> MovingDigitsResult:
    """Write a clip of ``digits`` moving digits over real footage, its MOT ground truth and labels.

    Args:
        out_dir: folder for ``moving_digits.mp4``, ``gt.txt`` and ``labels.json`` (created).
        split: whose digits and footage: "test" (default) uses test digits and bigbuckbunny.mp4.
        frames: number of frames.
        size: (height, width) of the frames; both even (yuv420p).
        digits: number of digits, each a track with its own id (1..digits) and class.
        fps: frame rate written in the video.
        seed: the clip is a pure function of all the arguments.
        fragments: distractor fragments drifting beneath the digits.
        footage: "split" (the split's own video) or "held-out": ``carphone_pristine.mp4``, which neither
            the default recipe nor the test split uses, so that tracking on unseen footage can be
            measured without the demo's test clip (not for the test split: its footage never moves).
    """
    try:
        import av
    except ImportError as e:
        raise MissingDependency("av", "data") from e
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {tuple(SPLIT_CODES)}, got {split!r}")
    height, width = size
    if height % 2 or width % 2 or min(height, width) < 32:
        raise ValueError(f"size must be (height, width), both even and >= 32, got {size}")
    if footage not in ("split", "held-out"):
        raise ValueError(f"footage must be 'split' or 'held-out', got {footage!r}")
    if footage == "held-out" and split == "test":
        raise ValueError("the test split keeps its own footage: it never moves")
    if frames < 1 or digits < 1 or fps < 1:
        raise ValueError(f"frames, digits and fps must be positive, got {frames}, {digits}, {fps}")

    rng = np.random.default_rng([seed, SPLIT_CODES[split], _MOVING_CODE])
    bank = digit_bank(split)
    background = _Footage(rng, split, width, height, held_out=footage == "held-out")
    short = min(width, height)
    times = np.linspace(0, frames - 1, 8).astype(int)
    sampled = np.concatenate([background(t)[::8, ::8].reshape(-1, 3) for t in times])

    chosen = rng.choice(len(bank.indices), size=digits + fragments, replace=len(bank.indices) < digits + fragments)
    movers: list[_Mover] = []
    for k in chosen[:digits]:
        x0, y0, x1, y1 = bank.boxes[k]
        scale = rng.uniform(*DIGIT_SIDE) * short / max(x1 - x0, y1 - y0)
        patch = digit_patch(bank, int(k), scale)
        extent = stroke_extent(patch)
        if extent is None:
            raise BadData(f"mnist5k digit {int(bank.indices[k])} has no stroke pixels")
        for _ in range(200):
            pos = _random_pos(rng, extent, width, height)
            mover = _Mover(patch, extent, pos, _velocity(rng, SPEED, short), (0, 0, 0), 1.0)
            if not _crowded(mover.box(), [m.box() for m in movers], MAX_DIGIT_OVERLAP):
                break
        else:
            raise ValueError(f"cannot place {digits} digits in a {width}x{height} frame without overlap")
        movers.append(mover)
        mover.colour = _footage_colour(rng, sampled)
        mover.contrast = float(rng.uniform(*CONTRAST))

    drifters: list[_Mover] = []
    for k in chosen[digits:]:
        x0, y0, x1, y1 = bank.boxes[k]
        scale = rng.uniform(*DIGIT_SIDE) * short / max(x1 - x0, y1 - y0)
        patch = fragment_patch(rng, bank, int(k), scale)
        extent = None if patch is None else stroke_extent(patch)
        if patch is None or extent is None:
            continue
        pos = _random_pos(rng, extent, width, height)
        vel = _velocity(rng, FRAGMENT_SPEED, short)
        drifters.append(_Mover(patch, extent, pos, vel, _footage_colour(rng, sampled), float(rng.uniform(*CONTRAST))))

    out_dir = Path(out_dir)
    video, gt, labels_path = out_dir / "moving_digits.mp4", out_dir / "gt.txt", out_dir / "labels.json"
    boxes = np.zeros((frames, digits, 4), dtype=np.int64)
    rows: list[str] = []
    with atomic_output(video) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream, codec = open_video_stream(container, fps, width, height)
        for t in range(frames):
            canvas = background(t)
            for m in drifters:
                alpha_paste(canvas, m.patch, *(round(v) for v in m.pos), m.colour, m.contrast)
            for j, m in enumerate(movers):
                alpha_paste(canvas, m.patch, *(round(v) for v in m.pos), m.colour, m.contrast)
                b = m.box()
                boxes[t, j] = b
                rows.append(f"{t + 1},{j + 1},{b[0]},{b[1]},{b[2] - b[0]},{b[3] - b[1]},1,1,1")
            image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, fps)
            container.mux(stream.encode(frame))
            _step(movers, drifters, width, height)
        container.mux(stream.encode(None))
    with atomic_output(gt) as tmp:
        tmp.write_text("\n".join(rows) + "\n")
    labels = {j + 1: int(bank.labels[k]) for j, k in enumerate(chosen[:digits])}
    with atomic_output(labels_path) as tmp:
        tmp.write_text(json.dumps({str(i): c for i, c in labels.items()}, indent=1) + "\n")
    return MovingDigitsResult(
        video=video,
        gt=gt,
        labels_path=labels_path,
        labels=labels,
        colours={j + 1: m.colour for j, m in enumerate(movers)},
        digits={j + 1: int(bank.indices[k]) for j, k in enumerate(chosen[:digits])},
        frames=frames,
        size=(height, width),
        fps=fps,
        codec=codec,
        background=background.name,
        boxes=boxes,
        strokes={j + 1: _stroke_mask(m) for j, m in enumerate(movers)},
    )


def _stroke_mask(m: _Mover) -> np.ndarray:
    """The digit's stroke pixels inside its box; the same in every frame, since digits only translate."""
    x0, y0, x1, y1 = m.extent
    return m.patch[y0:y1, x0:x1] >= 127.5


def _step(movers: list[_Mover], drifters: list[_Mover], width: int, height: int) -> None:
    """Advance one frame: digits keep apart from each other, fragments keep off the digits."""
    for j, m in enumerate(movers):
        pos = m.proposed(width, height)
        others = [o.box() for i, o in enumerate(movers) if i != j]
        if _crowded(m.box(pos), others, MAX_DIGIT_OVERLAP):
            m.vel = -m.vel
        else:
            m.pos = pos
    digit_boxes = [m.box() for m in movers]
    for d in drifters:
        pos = d.proposed(width, height)
        if _crowded(d.box(pos), digit_boxes, 0.1):
            d.vel = -d.vel
        else:
            d.pos = pos
