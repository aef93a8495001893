"""Representative frames for INT8 calibration, preprocessed exactly as at run time.

A source is a video file (decoded with PyAV), an image folder or glob, or a data spec
(``synthetic:val``, a dataset path). Frames are picked evenly over the source (``even``, the
default: a video's scenes all get a say) or at random with a seed.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from edge_xcnn.errors import BadData
from edge_xcnn.meta import ModelMeta
from edge_xcnn.preprocess import preprocess

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts"})


def _pick(total: int, count: int, pick: str, seed: int) -> np.ndarray:
    if total == 0:
        return np.zeros(0, np.int64)
    if pick == "even":
        return np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(np.int64))
    if pick == "random":
        return np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))
    raise ValueError(f"pick must be 'even' or 'random', got {pick!r}")


def _video_frames(path: Path, count: int, pick: str, seed: int) -> list[np.ndarray]:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            total = stream.frames or sum(1 for _ in container.decode(video=0))
        wanted = set(_pick(total, count, pick, seed).tolist())
        frames = []
        with av.open(str(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index in wanted:
                    frames.append(frame.to_ndarray(format="rgb24"))
        return frames
    except (av.FFmpegError, IndexError) as e:
        raise BadData(f"cannot decode video frames from {path}") from e


def _image_files(spec: str) -> list[Path]:
    from edge_xcnn.train.datasets.image_folder import images_in, is_image_name

    path = Path(spec)
    if path.is_dir():
        return images_in(path)
    return sorted(Path(p) for p in glob.glob(spec, recursive=True) if is_image_name(Path(p).name))


def default_calibration_spec(meta: ModelMeta) -> str:
    """The contract's default ``--calib``: the training split of the data the model was trained on."""
    return f"{meta.data or meta.recipe}:train"


def calibration_batch(spec: str, meta: ModelMeta, *, count: int = 256, pick: str = "even", seed: int = 0) -> np.ndarray:
    """``count`` frames of ``spec`` as one float32 N x C x H x W batch in [0, 1]."""
    path = Path(spec)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        frames = _video_frames(path, count, pick, seed)
    elif any(ch in spec for ch in "*?[") or (path.is_dir() and not _is_dataset(path)):
        from edge_xcnn.train.datasets.image_folder import read_rgb

        files = _image_files(spec)
        frames = [read_rgb(files[i]) for i in _pick(len(files), count, pick, seed)]
    else:
        from edge_xcnn.train.data_spec import open_split, parse_data_spec

        dataset = open_split(parse_data_spec(spec, default_split="val"))
        frames = [dataset[int(i)].image for i in _pick(len(dataset), count, pick, seed)]
    if not frames:
        raise BadData(f"calibration source {spec} has no frames")
    return np.stack([preprocess(frame, meta)[0] for frame in frames])


def _is_dataset(path: Path) -> bool:
    from edge_xcnn.train.data_spec import detect_recipe

    try:
        detect_recipe(path)
    except BadData:
        return False
    return True
