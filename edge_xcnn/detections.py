"""One frame's boxes, in one columnar type from the heatmap to the sinks.

The shape is supervision's ``Detections`` (``xyxy``, ``confidence``, ``class_id``, ``tracker_id``),
checked once in ``__post_init__``; ``to_supervision`` hands the same arrays to Roboflow's trackers
without copying and ``from_supervision`` takes their answer back. It is our own thin type (not
``sv.Detections`` itself) because importing supervision costs ~3 s here, which ``eval`` and the
torch-free core should not pay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _column(values: Any, dtype: type, n: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(values, dtype=dtype).reshape(-1)
    if len(array) != n:
        raise ValueError(f"{name} must have one value per box ({n}), got {len(array)}")
    return array


@dataclass
class Detections:
    """Boxes of one frame, source pixels, ``x2``/``y2`` exclusive edges.

    Attributes:
        xyxy: N x 4 float32.
        confidence: N float32, the normalized heat (peak or mean) inside each box, in [0, 1].
        class_id: N int64 class of each box's own crop (``--classify-boxes``), else None.
        tracker_id: N int64 track ids, 1-based, -1 for a box no confirmed track owns; None without tracking.
    """

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    class_id: np.ndarray | None = None
    tracker_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must be N x 4, got {xyxy.shape}")
        n = len(xyxy)
        self.xyxy = xyxy
        confidence = _column(self.confidence, np.float32, n, "confidence")
        assert confidence is not None
        self.confidence = confidence
        self.class_id = _column(self.class_id, np.int64, n, "class_id")
        self.tracker_id = _column(self.tracker_id, np.int64, n, "tracker_id")

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | np.ndarray) -> Detections:
        """A subset (an index keeps the N x 4 shape)."""
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1 or None)

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return Detections(self.xyxy[index], self.confidence[index], pick(self.class_id), pick(self.tracker_id))

    @classmethod
    def empty(cls) -> Detections:
        return cls()

    def to_supervision(self) -> Any:
        """The same arrays as ``supervision.Detections`` (what Roboflow's trackers take)."""
        import supervision as sv

        ids = None if self.tracker_id is None else np.where(self.tracker_id >= 1, self.tracker_id - 1, -1)
        return sv.Detections(xyxy=self.xyxy, confidence=self.confidence, class_id=self.class_id, tracker_id=ids)

    @classmethod
    def from_supervision(cls, detections: Any) -> Detections:
        """Back from supervision; its 0-based tracker ids (-1 = unconfirmed) become 1-based (MOTChallenge)."""
        n = len(detections)
        confidence = detections.confidence if detections.confidence is not None else np.ones(n, np.float32)
        ids = detections.tracker_id
        if ids is not None:
            ids = np.asarray(ids, np.int64).reshape(-1)
            ids = np.where(ids >= 0, ids + 1, -1)
        return cls(np.asarray(detections.xyxy).reshape(-1, 4), confidence, detections.class_id, ids)
