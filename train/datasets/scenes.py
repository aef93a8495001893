"""Training scenes without a colour shortcut: 0-3 real digits among clutter on recoloured footage.

Why this exists: trained on ``SyntheticDigits`` (one digit of random colour over mostly muted
footage), every generator we tried learnt "an unusual colour is a digit": its evidence followed the
background's saturation (Spearman 0.80), GT-known loc fell from 66% on the least saturated third
of test backgrounds to 7% on the most saturated, and on the same images turned grey top-1 fell to
9.8%. No architecture change removed it (16% vs 70%): only the data can. So, in these scenes:

- **backgrounds** are the training footage (never the test footage) with a random hue rotation and a
  saturation gain drawn log-uniformly in [1/4, 3] (``SATURATION_GAIN``), and in ``COLOURFUL_P`` of
  them a layer of saturated colour (random soft blobs, stripes or a gradient) blended over it, so
  strongly coloured regions are common and carry no label;
- **digits and fragments** are grey (R = G = B) in ``GREY_DIGIT_P`` of the cases and of a random
  colour otherwise, with the benchmark's luminance rule (>= 60/255 away from what lies under them),
  so colour says nothing about digit versus clutter;
- **0-3 digits** per image (``DIGIT_COUNT_P``), each a different mnist5k training digit, boxes
  overlapping by at most 5% of the smaller one; 4-7 fragments of other digits as in the benchmark,
  off every digit's box. Scale: one digit 25-60% of the side as the benchmark; with two or three,
  25-45% so they fit.
- **glyph warps**: each digit is rotated (+-15 deg), sheared (+-0.25), stretched (0.85-1.15 per
  axis) and, in a third of the cases, drawn thicker or thinner (3x3 dilation / erosion) before it
  is placed (``warp_glyph``). Why: each of the 3,600 training digits appears in ~13 of the default
  recipe's 30,000 cached scenes (1.6 digits per scene), each seen 6 times, and the test digits are
  other writers'; these are the variations of MNIST itself (slant, width, pen), not of the benchmark,
  whose test split is untouched.

Label rule: the set of classes present (multi-hot), trained with a per-class sigmoid (binary
cross-entropy). Why: with several digits, a single label would have to pick one and teach the map to
hide the others, which is the opposite of what the runner needs (one box per digit); an empty image
teaches "no evidence" directly. A single-digit image's top-1 is still the arg-max logit, so the
frozen single-digit test split is scored exactly as before.

Only ``train`` scenes exist: validation and test stay the benchmark's ``SyntheticDigits`` splits
(single digit), so model selection, the threshold and every figure compare with earlier models.
Sample ``i`` is a pure function of (size, seed, i).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import cv2
import numpy as np

from edge_xcnn.train.datasets.backgrounds import background_pool, sample_crop, scene_pool
from edge_xcnn.train.datasets.base import Sample
from edge_xcnn.train.datasets.mnist5k import CLASSES
from edge_xcnn.train.datasets.synthetic import (
    BLUR_P,
    BLUR_SIGMA,
    CONTRAST,
    DIGIT_SIDE,
    FRAGMENT_SCALE,
    FRAGMENTS,
    MAX_FRAGMENT_OVERLAP,
    MIN_LUMA_GAP,
    NOISE_P,
    NOISE_SIGMA,
    Box,
    Colour,
    DigitBank,
    _overlap,
    _randint,
    alpha_paste,
    clip_patch,
    digit_bank,
    digit_patch,
    fragment_patch,
    pick_colour,
    region_luma,
    stroke_extent,
)

DIGIT_COUNT_P = (0.1, 0.4, 0.3, 0.2)  # P(0, 1, 2, 3 digits): one digit (the test case) most often
MULTI_DIGIT_SIDE = (0.25, 0.45)  # with two or three digits, so that they fit
GLYPH_ROTATION = 15.0  # degrees, uniform +-
GLYPH_SHEAR = 0.25  # horizontal shear, uniform +-
GLYPH_STRETCH = (0.85, 1.15)  # per-axis scale
GLYPH_PEN_P = 1 / 3  # P(dilate or erode the strokes), half each
MAX_DIGIT_OVERLAP = 0.05  # of the smaller digit's box
GREY_DIGIT_P = 0.3
SATURATION_GAIN = (0.25, 3.0)  # log-uniform
COLOURFUL_P = 0.4
SHAPES = (2, 6)  # shape clutter: inclusive range of strokes per scene that gets them
SHAPE_SIDE = (0.15, 0.6)  # a shape's extent, as a fraction of the image side
DEFAULT_LENGTH = 20000
SCENE_BACKGROUNDS = ("train", "wide")  # the benchmark's train pool, or it plus backgrounds.SCENE_EXTRA_SOURCES
_SCENE_CODE = 11  # keeps these random streams apart from the benchmark's


@dataclass(frozen=True)
class SceneDigit:
    """One digit of a scene: class, tight stroke box (xyxy, exclusive), mnist5k bank index."""

    label: int
    box: tuple[int, int, int, int]
    digit: int


class SyntheticScenes:
    """``LabelledImages`` of training scenes; ``Sample.labels`` holds the classes present.

    ``Sample.label`` is the largest digit's class (-1 for an empty scene), ``box``/``mask`` the
    largest digit's box and the union of every digit's stroke pixels, ``boxes`` every digit's box.
    """

    classes: list[str]

    def __init__(
        self,
        size: int = 64,
        seed: int = 0,
        length: int = DEFAULT_LENGTH,
        count_p: tuple[float, ...] = DIGIT_COUNT_P,
        warp_glyphs: bool = True,
        backgrounds: str = "train",
        shape_clutter: float = 0.0,
        textures: float = 0.0,
        photometric: float = 0.0,
    ) -> None:
        if not 0.0 <= shape_clutter <= 1.0:
            raise ValueError(f"shape_clutter must be a probability in [0, 1], got {shape_clutter}")
        if not 0.0 <= textures <= 1.0:
            raise ValueError(f"textures must be a probability in [0, 1], got {textures}")
        if not 0.0 <= photometric <= 1.0:
            raise ValueError(f"photometric must be a probability in [0, 1], got {photometric}")
        if backgrounds not in SCENE_BACKGROUNDS:
            raise ValueError(f"backgrounds must be one of {SCENE_BACKGROUNDS}, got {backgrounds!r}")
        if size < 16:
            raise ValueError(f"size must be at least 16 pixels, got {size}")
        if len(count_p) != len(DIGIT_COUNT_P) or abs(sum(count_p) - 1.0) > 1e-9 or min(count_p) < 0:
            raise ValueError(f"count_p must be {len(DIGIT_COUNT_P)} probabilities of 0-3 digits, got {count_p}")
        self.size, self.seed, self.length = int(size), int(seed), int(length)
        self.count_p = tuple(float(p) for p in count_p)
        self.warp_glyphs = bool(warp_glyphs)
        self.backgrounds = backgrounds
        self.shape_clutter = float(shape_clutter)
        self.textures = float(textures)
        self.photometric = float(photometric)
        self.classes = list(CLASSES)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        i = operator.index(index)
        if not 0 <= i < self.length:
            raise IndexError(f"index {index} out of range for {self.length} scenes")
        rng = np.random.default_rng([self.seed, _SCENE_CODE, i])
        bank = digit_bank("train")
        pool = scene_pool() if self.backgrounds == "wide" else background_pool("train")
        # Drawn only when on, like the shape clutter below (the default model's scenes keep their bytes).
        if self.textures and rng.random() < self.textures:
            crop = procedural_texture(rng, self.size)
        else:
            crop = sample_crop(pool, rng, self.size)[0]
        canvas = recolour_background(crop, rng)
        if self.photometric:  # its own random numbers: the scene keeps its digits, boxes and clutter
            style = np.random.default_rng([self.seed, _SCENE_CODE, i, 1])
            if style.random() < self.photometric:
                canvas = photometric_jitter(canvas, style)
        canvas = canvas.astype(np.float32)
        count = int(rng.choice(len(self.count_p), p=self.count_p))
        placed = self.place_digits(rng, bank, count)
        boxes = [p[3] for p in placed]
        scale = placed[0][2] if placed else float(rng.uniform(1.0, 2.0))
        self._fragments(rng, bank, canvas, {p[0] for p in placed}, scale, boxes)
        # Drawn only when on, so that scenes without it keep their stream of random numbers (and the
        # default recipe its byte-identical model).
        if self.shape_clutter and rng.random() < self.shape_clutter:
            self._shapes(rng, canvas, boxes)
        mask = np.zeros((self.size, self.size), dtype=bool)
        digits = []
        for k, patch, _, box, (px, py) in placed:
            alpha_paste(canvas, patch, px, py, stroke_colour(rng, region_luma(canvas, box)), rng.uniform(*CONTRAST))
            part, rows, cols = clip_patch(patch, px, py, mask.shape)
            mask[rows, cols] |= part >= 127.5
            digits.append(SceneDigit(int(bank.labels[k]), box, int(bank.indices[k])))
        if rng.random() < BLUR_P:
            canvas = cv2.GaussianBlur(canvas, (3, 3), float(rng.uniform(*BLUR_SIGMA)))
        if rng.random() < NOISE_P:
            canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * float(rng.uniform(*NOISE_SIGMA))
        image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
        largest = max(digits, key=lambda d: _area(d.box)) if digits else None
        return Sample(
            image=image,
            label=largest.label if largest else -1,
            box=np.array(largest.box, np.float32) if largest else None,
            mask=mask,
            labels=tuple(sorted({d.label for d in digits})),
            boxes=np.array([d.box for d in digits], np.float32).reshape(-1, 4),
        )

    def place_digits(
        self, rng: np.random.Generator, bank: DigitBank, count: int
    ) -> list[tuple[int, np.ndarray, float, Box, tuple[int, int]]]:
        """Up to ``count`` digits at random places, each box overlapping the others by <= 5%."""
        side = DIGIT_SIDE if count == 1 else MULTI_DIGIT_SIDE
        lo, hi = side[0] * self.size, side[1] * self.size
        placed: list[tuple[int, np.ndarray, float, Box, tuple[int, int]]] = []
        used: set[int] = set()
        for _ in range(count):
            for _attempt in range(12):
                k = _randint(rng, 0, len(bank.indices))
                if k in used:
                    continue
                x0, y0, x1, y1 = bank.boxes[k]
                scale = float(rng.uniform(lo, hi)) / max(x1 - x0, y1 - y0)
                patch = digit_patch(bank, k, scale)
                if self.warp_glyphs:
                    patch = warp_glyph(rng, patch)
                mb = stroke_extent(patch)
                if mb is None or mb[2] - mb[0] > self.size or mb[3] - mb[1] > self.size:
                    continue
                x = _randint(rng, -mb[0], self.size - mb[2] + 1)
                y = _randint(rng, -mb[1], self.size - mb[3] + 1)
                box = (x + mb[0], y + mb[1], x + mb[2], y + mb[3])
                if all(_overlap(box, b[3]) <= MAX_DIGIT_OVERLAP * min(_area(box), _area(b[3])) for b in placed):
                    placed.append((k, patch, scale, box, (x, y)))
                    used.add(k)
                    break
        return placed

    def _fragments(
        self,
        rng: np.random.Generator,
        bank: DigitBank,
        canvas: np.ndarray,
        digits: set[int],
        scale: float,
        boxes: list[Box],
    ) -> None:
        """4-7 fragments of other digits, each off every digit's box (8 positions tried per crop)."""
        wanted = _randint(rng, FRAGMENTS[0], FRAGMENTS[1] + 1)
        for _ in range(wanted):
            for _attempt in range(6):
                k = _randint(rng, 0, len(bank.indices))
                if k in digits:
                    continue
                patch = fragment_patch(rng, bank, k, scale * rng.uniform(*FRAGMENT_SCALE))
                mb = None if patch is None else stroke_extent(patch)
                if patch is None or mb is None:
                    continue
                w, h = mb[2] - mb[0], mb[3] - mb[1]
                if w > self.size or h > self.size:
                    continue
                for _ in range(8):
                    x = _randint(rng, -mb[0], self.size - mb[2] + 1)
                    y = _randint(rng, -mb[1], self.size - mb[3] + 1)
                    box = (x + mb[0], y + mb[1], x + mb[2], y + mb[3])
                    if all(_overlap(box, b) <= MAX_FRAGMENT_OVERLAP * w * h for b in boxes):
                        colour = stroke_colour(rng, region_luma(canvas, box))
                        alpha_paste(canvas, patch, x, y, colour, rng.uniform(*CONTRAST))
                        break
                break

    def _shapes(self, rng: np.random.Generator, canvas: np.ndarray, boxes: list[Box]) -> None:
        """2-6 pen strokes that are no digit (short dashes, zigzags, open arcs, hatching), off the digits' boxes.

        Why: the digit fragments teach "part of a digit is not a digit", but on unseen footage the map
        still lights up thin, high-contrast lines (grass blades, edges, text: the demo's false boxes);
        these teach that strokes alone are no evidence. Shapes that pass for a digit are left out: no
        long straight stroke (a 1), no closed shape (a ring or a small rectangle reads as a 0), no arc past
        150 degrees (a 6, 9 or c). Drawn antialiased in the digits' stroke colours and contrasts, 1-2.5 px
        per 64 px of image.
        """
        size = self.size
        for _ in range(_randint(rng, SHAPES[0], SHAPES[1] + 1)):
            patch = shape_patch(rng, size).astype(np.float32)
            mb = stroke_extent(patch)
            if mb is None:
                continue
            w, h = mb[2] - mb[0], mb[3] - mb[1]
            for _attempt in range(8):
                x = _randint(rng, -mb[0], size - mb[2] + 1)
                y = _randint(rng, -mb[1], size - mb[3] + 1)
                box = (x + mb[0], y + mb[1], x + mb[2], y + mb[3])
                if all(_overlap(box, b) <= MAX_FRAGMENT_OVERLAP * w * h for b in boxes):
                    colour = stroke_colour(rng, region_luma(canvas, box))
                    alpha_paste(canvas, patch, x, y, colour, rng.uniform(*CONTRAST))
                    break


TEXTURE_KINDS = ("fractal", "grain", "cells", "structure")


def procedural_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A size x size RGB background no footage supplied: fractal noise, grain, cells or structure.

    Oriented grain stands for grass, wood and fabric; structure for rectangles and edges. Why: one
    street video and eight photos are few textures, and on unseen footage the map lights up texture
    it never saw (a quarter of the default model's held-out images: boxes over 1.5x the digit or off
    it). Contrast stays below the digits' (the shape clutter, drawn at the digits' contrast, taught
    that strokes are no evidence and cost held-out accuracy); ``recolour_background`` then varies it.
    """
    kind = TEXTURE_KINDS[_randint(rng, 0, len(TEXTURE_KINDS))]
    if kind == "fractal":
        field = np.zeros((size, size), np.float32)
        for octave in range(_randint(rng, 2, 6)):
            cells = 2 ** (octave + 1)
            noise = rng.random((cells, cells), dtype=np.float32)
            field += cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC) * 0.6**octave
    elif kind == "grain":
        length = _randint(rng, 5, size // 3)
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        turn = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, turn, (length, length))
        noise = rng.random((size, size), dtype=np.float32)
        field = cv2.filter2D(noise, -1, kernel / max(float(kernel.sum()), 1e-6), borderType=cv2.BORDER_REFLECT)
    elif kind == "cells":
        field = np.full((size, size), float(rng.random()), np.float32)
        for _ in range(_randint(rng, 8, 40)):
            centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
            axes = (int(rng.integers(2, size // 3)), int(rng.integers(2, size // 3)))
            cv2.ellipse(field, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.random()), -1)
    else:  # structure
        field = np.full((size, size), float(rng.random()), np.float32)
        for _ in range(_randint(rng, 3, 12)):
            x0, y0 = (int(v) for v in rng.integers(-size // 4, size, 2))
            w, h = (int(v) for v in rng.integers(size // 8, size, 2))
            cv2.rectangle(field, (x0, y0), (x0 + w, y0 + h), float(rng.random()), -1)
    lo, hi = float(field.min()), float(field.max())
    field = (field - lo) / (hi - lo) if hi - lo > 1e-6 else np.zeros_like(field)
    # Two colours apart by at most 2/3 of the range, so that the texture stays below a digit's contrast.
    first = rng.uniform(0, 255, 3).astype(np.float32)
    second = np.clip(first + rng.uniform(-170, 170, 3).astype(np.float32), 0, 255)
    image = first * (1 - field[..., None]) + second * field[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def shape_patch(rng: np.random.Generator, size: int) -> np.ndarray:
    """One pen stroke that is no digit, drawn at 255 on a black uint8 patch (see ``SyntheticScenes._shapes``)."""
    pen = max(1.0, size / 64)
    side = max(6, round(float(rng.uniform(*SHAPE_SIDE)) * size))
    patch = np.zeros((side + 4, side + 4), np.uint8)
    thickness = max(1, round(pen * float(rng.uniform(1.0, 2.5))))
    kind = _randint(rng, 0, 4)
    if kind == 0:  # a short dash (at most a fifth of the image: shorter than any digit)
        length = min(side, 0.2 * size) * float(rng.uniform(0.4, 1.0))
        angle = float(rng.uniform(0, np.pi))
        c = side / 2 + 2
        d = np.array([np.cos(angle), np.sin(angle)]) * length / 2
        cv2.line(
            patch,
            (round(c - d[0]), round(c - d[1])),
            (round(c + d[0]), round(c + d[1])),
            255,
            thickness,
            cv2.LINE_AA,
        )
    elif kind == 1:  # a zigzag: 5-7 points swept across the extent
        count = _randint(rng, 5, 8)
        xs = np.linspace(2, side + 1, count)
        ys = np.where(
            np.arange(count) % 2 == 0,
            rng.uniform(2, side / 3 + 2, count),
            rng.uniform(2 * side / 3, side + 1, count),
        )
        pts = np.stack([xs, ys], 1).round().astype(np.int32)
        if rng.random() < 0.5:
            pts = pts[:, ::-1].copy()
        cv2.polylines(patch, [pts], False, 255, thickness, cv2.LINE_AA)
    elif kind == 2:  # an open arc of 40-150 degrees
        centre = (side // 2 + 2, side // 2 + 2)
        axes = (max(2, side // 2), max(2, round(side / 2 * float(rng.uniform(0.3, 1.0)))))
        start = float(rng.uniform(0, 360))
        cv2.ellipse(
            patch,
            centre,
            axes,
            float(rng.uniform(0, 180)),
            start,
            start + float(rng.uniform(40, 150)),
            255,
            thickness,
            cv2.LINE_AA,
        )
    else:  # hatching: 3-5 parallel strokes (grass, fences, text lines)
        count = _randint(rng, 3, 6)
        angle = float(rng.uniform(0, np.pi))
        along = np.array([np.cos(angle), np.sin(angle)])
        across = np.array([-along[1], along[0]])
        c = np.array([side / 2 + 2, side / 2 + 2])
        for j in range(count):
            o = c + across * (j - (count - 1) / 2) * side / (count + 1)
            e = along * side / 2 * float(rng.uniform(0.5, 1.0))
            cv2.line(
                patch,
                tuple((o - e).round().astype(int).tolist()),
                tuple((o + e).round().astype(int).tolist()),
                255,
                thickness,
                cv2.LINE_AA,
            )
    return patch


def warp_glyph(rng: np.random.Generator, patch: np.ndarray) -> np.ndarray:
    """``patch`` (float intensities) rotated, sheared, stretched about its centre, on a canvas that holds it all.

    Pen width changes (dilate / erode with a 3x3 kernel) come after the warp, so they are in image
    pixels: one pixel at every scale, as a thicker or thinner pen would be.
    """
    h, w = patch.shape
    angle = np.deg2rad(rng.uniform(-GLYPH_ROTATION, GLYPH_ROTATION))
    shear = rng.uniform(-GLYPH_SHEAR, GLYPH_SHEAR)
    sx, sy = rng.uniform(*GLYPH_STRETCH, size=2)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    linear = rotation @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sx, sy])
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64) - (w / 2, h / 2)
    moved = corners @ linear.T
    out_w, out_h = (int(np.ceil(v)) + 2 for v in moved.max(0) - moved.min(0))
    offset = np.array([out_w / 2, out_h / 2]) - linear @ np.array([w / 2, h / 2])
    matrix = np.hstack([linear, offset[:, None]]).astype(np.float32)
    warped = cv2.warpAffine(patch, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    pen, kernel = rng.random(), np.ones((3, 3), np.uint8)
    if pen < GLYPH_PEN_P / 2:
        return cv2.dilate(warped, kernel)
    if pen < GLYPH_PEN_P:
        thinner = cv2.erode(warped, kernel)
        if (thinner >= 127.5).sum() >= 0.4 * (warped >= 127.5).sum():  # only where the digit survives it
            return thinner
    return warped


def _area(box: Box) -> int:
    return max(box[2] - box[0], 0) * max(box[3] - box[1], 0)


def stroke_colour(rng: np.random.Generator, luma: float) -> Colour:
    """Grey (``GREY_DIGIT_P``) or a random colour, at least MIN_LUMA_GAP in luminance from ``luma``."""
    if rng.random() < GREY_DIGIT_P:
        far = [v for v in range(256) if abs(v - luma) >= MIN_LUMA_GAP]
        v = far[_randint(rng, 0, len(far))] if far else (0 if luma >= 127.5 else 255)
        return v, v, v
    return pick_colour(rng, luma)


def recolour_background(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate the hue, scale the saturation (log-uniform gain), maybe blend a saturated colour layer."""
    hsv = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(0, 180)) % 180
    gain = float(np.exp(rng.uniform(np.log(SATURATION_GAIN[0]), np.log(SATURATION_GAIN[1]))))
    hsv[..., 1] = np.clip(hsv[..., 1] * gain, 0, 255)
    image = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    if rng.random() < COLOURFUL_P:
        layer = colour_layer(rng, crop.shape[0])
        alpha = float(rng.uniform(0.3, 0.8))
        image = (image * (1 - alpha) + layer * alpha).astype(np.uint8)
    return image


PHOTOMETRIC_CONTRAST = (0.4, 2.5)  # gain about the crop's mean, log-uniform
PHOTOMETRIC_BRIGHTNESS = 50.0  # shift, uniform +-
PHOTOMETRIC_GAMMA = (0.5, 2.0)  # log-uniform
PHOTOMETRIC_BLUR_SIGMA = (0.5, 2.0)


def photometric_jitter(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same background in another "style": contrast, brightness, gamma; a quarter blurred, a quarter negated.

    Why: a model that localizes well on its training footage (GT-known 82% on val) lost 11 points on
    footage it never saw; more footage or procedural textures at the same budget made the task
    harder (new structure to learn). This changes how the same structure looks, not what is there.
    Applied before any digit is drawn, so the digits' luminance rule still holds against it.
    """
    image = crop.astype(np.float32)
    mean = float(image.mean())
    gain = float(np.exp(rng.uniform(*np.log(PHOTOMETRIC_CONTRAST))))
    image = (image - mean) * gain + mean + float(rng.uniform(-PHOTOMETRIC_BRIGHTNESS, PHOTOMETRIC_BRIGHTNESS))
    image = np.clip(image, 0, 255)
    gamma = float(np.exp(rng.uniform(*np.log(PHOTOMETRIC_GAMMA))))
    image = 255.0 * (image / 255.0) ** gamma
    kind = rng.random()
    if kind < 0.25:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(*PHOTOMETRIC_BLUR_SIGMA)))
    elif kind < 0.5:
        image = 255.0 - image
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def colour_layer(rng: np.random.Generator, size: int) -> np.ndarray:
    """A saturated colour layer: soft blobs, stripes or a two-colour gradient (size x size RGB)."""

    def vivid() -> np.ndarray:
        hsv = np.array([[[rng.uniform(0, 180), rng.uniform(150, 255), rng.uniform(80, 255)]]], np.uint8)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)

    kind = _randint(rng, 0, 3)
    layer = np.empty((size, size, 3), np.float32)
    layer[:] = vivid()
    if kind == 0:  # blobs
        for _ in range(_randint(rng, 2, 7)):
            centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
            axes = (int(rng.integers(size // 8, size // 2)), int(rng.integers(size // 8, size // 2)))
            cv2.ellipse(layer, centre, axes, float(rng.uniform(0, 180)), 0, 360, vivid().tolist(), -1)
        layer = cv2.GaussianBlur(layer, (0, 0), size / 16)
    elif kind == 1:  # stripes
        period = int(rng.integers(size // 6, size // 2))
        other = vivid()
        yy, xx = np.mgrid[0:size, 0:size]
        angle = rng.uniform(0, np.pi)
        band = ((xx * np.cos(angle) + yy * np.sin(angle)) // period).astype(int) % 2 == 1
        layer[band] = other
        layer = cv2.GaussianBlur(layer, (0, 0), 1.0)
    else:  # gradient
        t = np.linspace(0, 1, size, dtype=np.float32)[None, :, None]
        layer = layer * (1 - t) + vivid() * t
        if rng.random() < 0.5:
            layer = layer.transpose(1, 0, 2)
    return np.clip(layer, 0, 255)
