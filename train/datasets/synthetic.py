"""The synthetic localization benchmark: one real MNIST digit among digit fragments on real footage.

Why it looks like this: a weakly supervised localizer trained on centred digits on black learns
"the bright blob" and scores near a trivial box. So the contract fixes the difficulty:

- exactly one labelled digit, its stroke box's longer side uniform in 25-60% of the image side,
  anywhere in the image (fully inside);
- 4-7 distractor fragments: crops covering 10-25% of the stroke box of *other* digits of the same
  split (25-55% of its width and of its height, so strokes are cut on both axes and a fragment
  reads as clutter, never as a second digit: a first version with 30-60% crops made the label
  ambiguous and no model learned it), at 0.6-1.0x the digit's scale, each overlapping the digit's
  box by at most 10% of its own area (8 positions tried per crop); an optional fragment is dropped
  after 3 crops that fit nowhere, a mandatory one (the first 4) is redrawn smaller and smaller
  (down to 0.5x), so there are always 4; fragments are drawn beneath the digit;
- alpha blending with alpha = intensity / 255 * contrast, contrast uniform in [0.6, 1]; every stroke
  gets a random RGB colour whose luminance differs from the mean luminance under it by >= 60/255;
- half the samples get Gaussian noise (sigma 2-6), 30% a mild blur (3x3, sigma 0.5-0.9).

Digits: train / val / test use the mnist5k splits of the same name (test digits never train).
Backgrounds: train and val crop the train pool (bikes.mp4 + one photo set), test the test pool
(bigbuckbunny.mp4 + another set); see ``backgrounds``. The box and mask are the digit's own stroke
pixels (alpha >= contrast / 2) in the final image, not its 28x28 patch.

Sample ``i`` is a pure function of (split, size, seed, i), so any order, any process and any
DataLoader worker gives the same sample. Every localization figure on this benchmark is to be
reported beside ``edge_xcnn.train.evaluate.trivial_boxes`` (the centred box of mean size and the
whole image).
"""

from __future__ import annotations

import functools
import itertools
import operator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from edge_xcnn.errors import BadData
from edge_xcnn.train.datasets.backgrounds import background_pool, held_out_pool, sample_crop
from edge_xcnn.train.datasets.base import LabelledImages, Sample
from edge_xcnn.train.datasets.mnist5k import CLASSES, load_mnist5k, mnist5k_indices, stroke_box

Split = Literal["train", "val", "test"]
Box = tuple[int, int, int, int]
Colour = tuple[int, int, int]

SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}
DEFAULT_LENGTHS: dict[str, int] = {"train": 20000, "val": 2000, "test": 2000}
BACKGROUND_SPLIT: dict[str, Literal["train", "test"]] = {"train": "train", "val": "train", "test": "test"}

DIGIT_SIDE = (0.25, 0.60)  # longer side of the digit's stroke box / image side
FRAGMENTS = (4, 7)  # inclusive range of distractor fragments
FRAGMENT_AREA = (0.10, 0.25)  # fraction of the donor digit's stroke box a fragment covers
FRAGMENT_SIDE = (0.25, 0.55)  # ... cut on both axes, so that it never passes for a whole digit
FRAGMENT_SCALE = (0.6, 1.0)  # fragment scale / digit scale
MAX_FRAGMENT_OVERLAP = 0.10  # of the fragment's box area, inside the digit's box
CONTRAST = (0.6, 1.0)
MIN_LUMA_GAP = 60.0
NOISE_P, NOISE_SIGMA = 0.5, (2.0, 6.0)
BLUR_P, BLUR_SIGMA = 0.3, (0.5, 0.9)

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec. 601 luminance
_PAD = 2  # 28x28 pixels kept around the stroke box, for the soft anti-aliased edge


@dataclass(frozen=True)
class Placement:
    """Where one stroke object went: its mnist5k index, stroke box (xyxy) in the image, looks."""

    digit: int
    box: tuple[float, float, float, float]
    colour: tuple[int, int, int]
    contrast: float


@dataclass(frozen=True)
class Layout:
    """How a sample was built, for tests and figures: sources, the digit and every fragment."""

    background: str
    target: Placement
    fragments: tuple[Placement, ...]
    noise_sigma: float
    blur_sigma: float


@dataclass(frozen=True)
class DigitBank:
    """One split's digits as float images with their 28x28 stroke boxes, computed once."""

    indices: np.ndarray
    labels: np.ndarray
    images: np.ndarray  # float32 N x 28 x 28, 0-255
    boxes: np.ndarray  # int N x 4 xyxy
    strokes: np.ndarray  # int N, stroke pixel count
    ink: np.ndarray  # int N x 29 x 29, summed-area table of stroke pixels (O(1) counts in a crop)


@functools.cache
def digit_bank(split: Split) -> DigitBank:
    """The digits of one mnist5k split, prepared once per process (read-only)."""
    images, labels = load_mnist5k()
    idx = mnist5k_indices(split)
    sel = images[idx]
    boxes = np.stack([stroke_box(im) for im in sel]).astype(np.int64)
    ink = np.zeros((len(sel), 29, 29), dtype=np.int64)
    ink[:, 1:, 1:] = (sel >= 128).cumsum(axis=1).cumsum(axis=2)
    return DigitBank(idx, labels[idx], sel.astype(np.float32), boxes, ink[:, -1, -1].copy(), ink)


def scaled_region(bank: DigitBank, k: int, region: Box, scale: float) -> np.ndarray:
    """Resize a region (xyxy in the 28x28 grid) of digit ``k`` by ``scale``: float intensities 0-255."""
    x0, y0, x1, y1 = region
    w, h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    return cv2.resize(bank.images[k, y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_LINEAR)


def digit_patch(bank: DigitBank, k: int, scale: float) -> np.ndarray:
    """Digit ``k`` with a small margin around its stroke box (for the soft edge), resized by ``scale``."""
    x0, y0, x1, y1 = (int(v) for v in bank.boxes[k])
    region = (max(x0 - _PAD, 0), max(y0 - _PAD, 0), min(x1 + _PAD, 28), min(y1 + _PAD, 28))
    return scaled_region(bank, k, region, scale)


def fragment_patch(rng: np.random.Generator, bank: DigitBank, k: int, scale: float) -> np.ndarray | None:
    """A crop of digit ``k`` that holds strokes but not the whole digit, resized by ``scale``.

    The crop covers FRAGMENT_AREA of the stroke box, cut on both axes (FRAGMENT_SIDE); crops with
    too little ink (< 15% of the digit's strokes) or too much (> 55% filled: a solid block) are
    redrawn, up to 4 times, else None.
    """
    x0, y0, x1, y1 = (int(v) for v in bank.boxes[k])
    bw, bh = x1 - x0, y1 - y0
    lo, hi = FRAGMENT_SIDE
    for _ in range(4):
        area = rng.uniform(*FRAGMENT_AREA)
        wf = rng.uniform(max(lo, area / hi), min(hi, area / lo))
        w, h = min(max(2, round(bw * wf)), bw), min(max(2, round(bh * area / wf)), bh)
        cx = x0 + _randint(rng, 0, bw - w + 1)
        cy = y0 + _randint(rng, 0, bh - h + 1)
        ink = bank.ink[k]
        strokes = int(ink[cy + h, cx + w] - ink[cy, cx + w] - ink[cy + h, cx] + ink[cy, cx])
        if max(6, 0.15 * bank.strokes[k]) <= strokes <= 0.55 * w * h:
            return scaled_region(bank, k, (cx, cy, cx + w, cy + h), scale)
    return None


def _randint(rng: np.random.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high): ``rng.integers`` costs ~10x more per scalar draw."""
    return low + min(int(rng.random() * (high - low)), high - low - 1)


def stroke_extent(patch: np.ndarray) -> Box | None:
    """Tight xyxy box of a scaled patch's stroke pixels (intensity >= 127.5, i.e. alpha >= contrast/2)."""
    x, y, w, h = cv2.boundingRect((patch >= 127.5).view(np.uint8))
    return (x, y, x + w, y + h) if w else None


def pick_colour(rng: np.random.Generator, luma: float) -> Colour:
    """A random RGB colour whose luminance is at least MIN_LUMA_GAP away from ``luma``."""
    for _ in range(16):  # luminance is usually far enough on the first or second draw
        r, g, b = (int(v * 256.0) for v in rng.random(3))
        if abs(0.299 * r + 0.587 * g + 0.114 * b - luma) >= MIN_LUMA_GAP:
            return r, g, b
    return (0, 0, 0) if luma >= 127.5 else (255, 255, 255)


def region_luma(canvas: np.ndarray, box: Box) -> float:
    """Mean luminance (0-255) of an RGB canvas inside ``box``."""
    x0, y0, x1, y1 = box
    r, g, b, _ = cv2.mean(canvas[y0:y1, x0:x1])
    return 0.299 * r + 0.587 * g + 0.114 * b


def clip_patch(patch: np.ndarray, x: int, y: int, shape: tuple[int, ...]) -> tuple[np.ndarray, slice, slice]:
    """The part of ``patch`` placed at (x, y) that lies inside an image of ``shape``, and where it goes."""
    h, w = shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + patch.shape[1], w), min(y + patch.shape[0], h)
    x1, y1 = max(x0, x1), max(y0, y1)
    return patch[y0 - y : y1 - y, x0 - x : x1 - x], slice(y0, y1), slice(x0, x1)


def alpha_paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int, colour: Colour, contrast: float) -> None:
    """Alpha-blend ``colour`` into ``canvas`` with alpha = patch / 255 * contrast, clipped to the canvas."""
    part, rows, cols = clip_patch(patch, x, y, canvas.shape)
    region = canvas[rows, cols]
    region += part[..., None] * (contrast / 255.0) * (np.asarray(colour, dtype=np.float32) - region)


def _float_box(box: Box) -> tuple[float, float, float, float]:
    return float(box[0]), float(box[1]), float(box[2]), float(box[3])


def _overlap(a: Box, b: Box) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0)


class SyntheticDigits:
    """The synthetic benchmark split as a ``LabelledImages`` of RGB ``size`` x ``size`` samples.

    Example:
        >>> ds = SyntheticDigits("test", size=64)  # doctest: +SKIP
        >>> s = ds[0]; s.image.shape, s.label, s.box  # doctest: +SKIP
        ((64, 64, 3), 7, array([12., 30., 35., 58.], dtype=float32))
    """

    classes: list[str]

    def __init__(
        self,
        split: Split = "train",
        size: int = 64,
        seed: int = 0,
        length: int | None = None,
        footage: Literal["split", "held-out"] = "split",
    ):
        """``footage="held-out"`` puts the split's digits on ``backgrounds.held_out_pool`` (never test's)."""
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {tuple(SPLIT_CODES)}, got {split!r}")
        if footage not in ("split", "held-out"):
            raise ValueError(f"footage must be 'split' or 'held-out', got {footage!r}")
        if footage == "held-out" and split == "test":
            raise ValueError("the test split keeps its own footage: it never moves")
        if size < 16:
            raise ValueError(f"size must be at least 16 pixels, got {size}")
        if length is not None and length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.split = split
        self.size = int(size)
        self.seed = int(seed)
        self.length = DEFAULT_LENGTHS[split] if length is None else int(length)
        self.footage = footage
        self.classes = list(CLASSES)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        return self.render(index)[0]

    def layout(self, index: int) -> Layout:
        """How sample ``index`` was built (digit, fragments, background source), without keeping it."""
        return self.render(index)[1]

    def render(self, index: int) -> tuple[Sample, Layout]:
        """Build sample ``index`` and its layout; deterministic in (split, size, seed, index)."""
        i = operator.index(index)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], i])
        bank = digit_bank(self.split)
        pool = held_out_pool() if self.footage == "held-out" else background_pool(BACKGROUND_SPLIT[self.split])
        background, source = sample_crop(pool, rng, self.size)
        canvas = background.astype(np.float32)

        k, patch, scale, (px, py), box = self._place_target(rng, bank)
        contrast = float(rng.uniform(*CONTRAST))
        fragments = self._fragments(rng, bank, canvas, k, scale, box)
        colour = pick_colour(rng, region_luma(canvas, box))
        alpha_paste(canvas, patch, px, py, colour, contrast)
        mask = np.zeros((self.size, self.size), dtype=bool)
        part, rows, cols = clip_patch(patch, px, py, mask.shape)
        mask[rows, cols] = part >= 127.5

        blur = float(rng.uniform(*BLUR_SIGMA)) if rng.random() < BLUR_P else 0.0
        if blur:
            canvas = cv2.GaussianBlur(canvas, (3, 3), blur)
        noise = float(rng.uniform(*NOISE_SIGMA)) if rng.random() < NOISE_P else 0.0
        if noise:
            canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * noise
        image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)

        target = Placement(int(bank.indices[k]), _float_box(box), colour, contrast)
        layout = Layout(pool.names[source], target, tuple(fragments), noise, blur)
        return Sample(image=image, label=int(bank.labels[k]), box=np.array(box, np.float32), mask=mask), layout

    def _place_target(
        self, rng: np.random.Generator, bank: DigitBank
    ) -> tuple[int, np.ndarray, float, tuple[int, int], Box]:
        """Choose the digit, scale it so its stroke box has the drawn size, choose where it goes."""
        size = self.size
        lo, hi = DIGIT_SIDE[0] * size, DIGIT_SIDE[1] * size
        k = _randint(rng, 0, len(bank.indices))
        x0, y0, x1, y1 = bank.boxes[k]
        want = float(rng.uniform(lo, hi))
        scale = want / max(x1 - x0, y1 - y0)
        for attempt in range(4):  # resampling moves the thresholded edge by up to ~scale/2 px: correct it
            patch = digit_patch(bank, k, scale)
            mb = stroke_extent(patch)
            side = 0 if mb is None else max(mb[2] - mb[0], mb[3] - mb[1])
            if (mb is not None and lo <= side <= hi) or attempt == 3:
                break
            scale *= float(np.clip(want, np.ceil(lo), np.floor(hi))) / max(side, 1)
        if mb is None:
            raise BadData(f"mnist5k digit {int(bank.indices[k])} has no stroke pixels")
        x = _randint(rng, -mb[0], size - mb[2] + 1)
        y = _randint(rng, -mb[1], size - mb[3] + 1)
        box = (x + mb[0], y + mb[1], x + mb[2], y + mb[3])
        return k, patch, scale, (x, y), box

    def _fragment(
        self,
        rng: np.random.Generator,
        bank: DigitBank,
        canvas: np.ndarray,
        target: int,
        scale: float,
        target_box: Box,
    ) -> Placement | None:
        """Crop another digit, find it a place off the target's box (8 tries), paste it; None if it failed."""
        k = _randint(rng, 0, len(bank.indices) - 1)
        k += int(k >= target)  # any digit but the target
        patch = fragment_patch(rng, bank, k, scale * rng.uniform(*FRAGMENT_SCALE))
        mb = None if patch is None else stroke_extent(patch)
        if patch is None or mb is None:
            return None
        w, h = mb[2] - mb[0], mb[3] - mb[1]
        if w > self.size or h > self.size:
            return None
        for _ in range(8):
            x = _randint(rng, -mb[0], self.size - mb[2] + 1)
            y = _randint(rng, -mb[1], self.size - mb[3] + 1)
            box = (x + mb[0], y + mb[1], x + mb[2], y + mb[3])
            if _overlap(box, target_box) <= MAX_FRAGMENT_OVERLAP * w * h:
                break
        else:
            return None
        contrast = float(rng.uniform(*CONTRAST))
        colour = pick_colour(rng, region_luma(canvas, box))
        alpha_paste(canvas, patch, x, y, colour, contrast)
        return Placement(int(bank.indices[k]), _float_box(box), colour, contrast)

    def _fragments(
        self,
        rng: np.random.Generator,
        bank: DigitBank,
        canvas: np.ndarray,
        target: int,
        scale: float,
        target_box: Box,
    ) -> list[Placement]:
        """Paste 4-7 fragments of other digits around (not onto) the target's box; return them."""
        wanted = _randint(rng, FRAGMENTS[0], FRAGMENTS[1] + 1)
        placed: list[Placement] = []
        for slot in range(wanted):
            mandatory = slot < FRAGMENTS[0]
            for attempt in range(40 if mandatory else 3):
                # a mandatory fragment that keeps failing gets smaller, down to half the digit's scale
                shrink = max(0.8 ** (attempt // 2), 0.5 / FRAGMENT_SCALE[0]) if mandatory else 1.0
                fragment = self._fragment(rng, bank, canvas, target, scale * shrink, target_box)
                if fragment is not None:
                    placed.append(fragment)
                    break
            else:
                if mandatory:
                    raise RuntimeError(f"could not place {FRAGMENTS[0]} fragments around {target_box}")
        return placed


def _render_range(dataset: LabelledImages, start: int, stop: int) -> tuple[np.ndarray, ...]:
    first = dataset[start]
    if first.box is None or first.mask is None:
        raise ValueError("materialize needs samples with a box and a mask")
    n = stop - start
    images = np.empty((n, *first.image.shape), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    boxes = np.empty((n, 4), dtype=np.float32)
    masks = np.empty((n, *first.mask.shape), dtype=bool)
    for j in range(n):
        s = first if j == 0 else dataset[start + j]
        if s.box is None or s.mask is None:
            raise ValueError(f"materialize needs samples with a box and a mask; sample {start + j} has none")
        images[j], labels[j], boxes[j], masks[j] = s.image, s.label, s.box, s.mask
    return images, labels, boxes, masks


def materialize(dataset: LabelledImages, workers: int = 0) -> tuple[np.ndarray, ...]:
    """Render a whole dataset into arrays: (images N x H x W x 3 uint8, labels int64, boxes N x 4, masks).

    ``workers > 0`` renders chunks in that many processes (the dataset must pickle; SyntheticDigits
    does, it keeps no arrays). The result is the same whatever ``workers`` is.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("cannot materialize an empty dataset")
    if workers <= 0:
        return _render_range(dataset, 0, n)
    edges = np.linspace(0, n, min(n, workers * 4) + 1).astype(int)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_render_range, dataset, int(a), int(b)) for a, b in itertools.pairwise(edges)]
        parts = [f.result() for f in futures]
    return tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))
