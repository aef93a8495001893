"""The self-description every model file carries (checkpoint, ONNX metadata, engine sidecar).

One versioned dataclass, stored identically everywhere, so that no command asks the user for what
the model already knows: classes, input size, normalization, colour, resize rule, heatmap polarity.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from edge_xcnn.errors import BadModelFile

FORMAT_VERSION = 2  # 2: box_evidence (a reader of format 1 would call the new key malformed)
META_KEY = "edge_xcnn"
# ONNX metadata_props key beside META_KEY: fp32, fp16 (FP32 inputs and outputs) or int8 (Q/DQ).
PRECISION_KEY = "edge_xcnn.precision"
# ONNX metadata_props key: the model's classifier alone as an ONNX model (base64), for the box check.
MAP_CLASSIFIER_KEY = "edge_xcnn.map_classifier"

Classifier = Literal["vgg16_bn", "mnist_net", "mnist_net_gmp", "mnist_net_deep", "mnist_net_wide"]
ArchKind = Literal["xcnn", "plain"]
CLASSIFIERS: tuple[str, ...] = ("vgg16_bn", "mnist_net", "mnist_net_gmp", "mnist_net_deep", "mnist_net_wide")
ARCH_KINDS: tuple[str, ...] = ("xcnn", "plain")
GENERATORS: tuple[str, ...] = ("paper", "context", "context-ibn")


@dataclass(frozen=True)
class ArchSpec:
    """What to build: XCNN (generator + classifier) or the plain classifier on the raw image.

    Attributes:
        kind: ``xcnn`` or ``plain`` (the paper's baseline, no generator).
        classifier: ``vgg16_bn`` (VGG-16 with batch norm) or ``mnist_net`` (the paper's 1-16-32-64 net).
        in_channels: channels of the image fed to the model (3 for RGB, 1 for gray).
        generator: ``paper`` (the authors' block, widened by ``generator_levels``) or ``context``
            (a multi-level encoder-decoder with batch norm and skips, ``edge_xcnn.models.generator``)
            or ``context-ibn`` (the same with half instance norm in its first two levels).
        generator_width: feature maps of the generator's first level (paper: 32 MNIST, 128 CIFAR/Tiny).
        generator_levels: encoder levels (conv-ReLU-avgpool); the authors' code builds one.
        fig7_channels: the paper's Fig. 7 variant (1x1 conv to C channels after the generator); None = off.
    """

    kind: str = "xcnn"
    classifier: str = "vgg16_bn"
    in_channels: int = 3
    generator_width: int = 32
    generator_levels: int = 1
    generator: str = "paper"
    fig7_channels: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ARCH_KINDS:
            raise ValueError(f"arch kind must be one of {ARCH_KINDS}, got {self.kind!r}")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {self.classifier!r}")
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if self.generator not in GENERATORS:
            raise ValueError(f"generator must be one of {GENERATORS}, got {self.generator!r}")
        if self.generator_width < 1 or self.generator_levels < 1:
            raise ValueError("generator width and levels must be >= 1")
        if self.fig7_channels is not None and self.fig7_channels < 1:
            raise ValueError(f"fig7_channels must be None or >= 1, got {self.fig7_channels}")


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to use a model file without asking the user.

    Attributes:
        arch: what network the weights belong to.
        classes: class names, index = logit index.
        input_size: (H, W) the network takes.
        mean, std: per-channel normalization of [0, 1] pixels (applied inside the network and graph).
        color: ``rgb`` or ``gray`` input.
        resize: ``stretch`` or ``letterbox`` from source frames to ``input_size``.
        polarity: +1 or -1; multiply the raw tanh heatmap by it so that evidence is positive.
        threshold: of the min-max normalized heatmap, for heatmap-to-box (paper: 0.5).
        box_evidence: least probability the classifier gives a box's own evidence (the map masked to
            the box, ``edge_xcnn.box_evidence``) for the runner to keep the box; 0 = no check.
        recipe: training recipe name; data: the data spec it was trained on (default for ``--calib``).
        metrics: figures measured when the file was written (e.g. validation accuracy).
    """

    arch: ArchSpec
    classes: tuple[str, ...]
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    color: str = "rgb"
    resize: str = "stretch"
    polarity: int = 1
    threshold: float = 0.5
    box_evidence: float = 0.0
    recipe: str = ""
    data: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError("a model needs at least one class")
        if len(self.input_size) != 2 or min(self.input_size) < 8:
            raise ValueError(f"input_size must be (H, W) with both >= 8, got {self.input_size}")
        if self.color not in ("rgb", "gray"):
            raise ValueError(f"color must be 'rgb' or 'gray', got {self.color!r}")
        channels = 3 if self.color == "rgb" else 1
        if self.arch.in_channels != channels:
            raise ValueError(f"color {self.color!r} needs {channels} input channels, arch has {self.arch.in_channels}")
        if len(self.mean) != channels or len(self.std) != channels or min(self.std) <= 0:
            raise ValueError(f"mean and std need {channels} values (std > 0), got {self.mean} and {self.std}")
        if self.resize not in ("stretch", "letterbox"):
            raise ValueError(f"resize must be 'stretch' or 'letterbox', got {self.resize!r}")
        if self.polarity not in (1, -1):
            raise ValueError(f"polarity must be +1 or -1, got {self.polarity}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 <= self.box_evidence < 1.0:
            raise ValueError(f"box_evidence must be in [0, 1), got {self.box_evidence}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.arch.in_channels

    def replace(self, **changes: Any) -> ModelMeta:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMeta:
        """Build from the stored dict; a newer format or a malformed dict is a bad model file."""
        try:
            version = int(data.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise BadModelFile(
                    f"model metadata format {version} is newer than this edge-xcnn understands "
                    f"({FORMAT_VERSION}); upgrade edge-xcnn"
                )
            fields = dict(data)
            fields["format_version"] = FORMAT_VERSION  # older formats read as the current one (fields default)
            fields["arch"] = ArchSpec(**fields["arch"])
            fields["classes"] = tuple(str(c) for c in fields["classes"])
            fields["input_size"] = tuple(int(v) for v in fields["input_size"])
            fields["mean"] = tuple(float(v) for v in fields["mean"])
            fields["std"] = tuple(float(v) for v in fields["std"])
            fields["metrics"] = {str(k): float(v) for k, v in fields.get("metrics", {}).items()}
            return cls(**fields)
        except BadModelFile:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise BadModelFile(f"model metadata is malformed: {e}") from e

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise BadModelFile(f"model metadata is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise BadModelFile("model metadata is not a JSON object")
        return cls.from_dict(data)
