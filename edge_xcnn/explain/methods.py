"""The saliency methods compared with XCNN's heatmap, behind one interface.

Every method turns a batch of images (N x C x H x W in [0, 1]) and target classes into maps at the
input resolution (N x H x W, larger = more evidence). The baselines come from well-kept libraries:
Captum (Meta) for Grad-CAM, plain gradients, guided backprop, deconvolution, guided Grad-CAM,
input x gradient and integrated gradients; the ``grad-cam`` package (pytorch_grad_cam) for
Grad-CAM++, HiResCAM, Score-CAM and Eigen-CAM when it can be imported (it needs a torchvision that
matches the installed torch). Methods that cannot run are listed with the reason, never dropped.

On an XCNN model the baselines explain the whole model (image -> generator -> classifier) and their
layers are the classifier's; on a plain classifier, that classifier.
"""

from __future__ import annotations

import abc
import copy
import functools
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_xcnn.errors import EdgeXcnnError

MIN_CAM_SIDE = 8  # "the last convolution whose map is at least 8x8"
IG_STEPS = 32


@dataclass(frozen=True)
class MethodSpec:
    """One saliency method.

    Attributes:
        name: what ``--methods`` takes.
        label: how tables and figures name it.
        source: ``xcnn`` (the model's own map), ``captum`` or ``grad-cam`` (the pytorch_grad_cam package).
        uses_layer: a CAM taken at a convolution (reported at two layers).
        class_specific: the map depends on the target class (XCNN's and Eigen-CAM's do not).
        gradients: needs a backward pass.
    """

    name: str
    label: str
    source: str
    uses_layer: bool = False
    class_specific: bool = True
    gradients: bool = True


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("xcnn", "XCNN heatmap", "xcnn", class_specific=False, gradients=False),
        MethodSpec("gradcam", "Grad-CAM", "captum", uses_layer=True),
        MethodSpec("gradcam++", "Grad-CAM++", "grad-cam", uses_layer=True),
        MethodSpec("hirescam", "HiResCAM", "grad-cam", uses_layer=True),
        MethodSpec("scorecam", "Score-CAM", "grad-cam", uses_layer=True, gradients=False),
        MethodSpec("eigencam", "Eigen-CAM", "grad-cam", uses_layer=True, class_specific=False, gradients=False),
        MethodSpec("guided-gradcam", "Guided Grad-CAM", "captum", uses_layer=True),
        MethodSpec("saliency", "Gradient", "captum"),
        MethodSpec("guided-backprop", "Guided Backprop", "captum"),
        MethodSpec("deconvolution", "Deconvolution", "captum"),
        MethodSpec("input-x-gradient", "Input x Gradient", "captum"),
        MethodSpec("integrated-gradients", f"Integrated Gradients ({IG_STEPS} steps)", "captum"),
    )
}


def _first_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    return text if len(text) <= 160 else text[:157] + "..."


@functools.cache
def source_problem(source: str) -> str | None:
    """Why a method source cannot run here (one line), or None when it can."""
    if source == "captum":
        try:
            import captum.attr  # noqa: F401
        except ImportError:
            return "needs Captum: pip install 'edge-xcnn[compare]'"
        return None
    if source == "grad-cam":
        try:
            import pytorch_grad_cam  # noqa: F401
        except ImportError:
            return "needs the grad-cam package (pytorch_grad_cam) with a torchvision that matches torch"
        except Exception as e:  # it imports torchvision, which fails in many ways when built for another torch
            return f"the grad-cam package does not import with this torch ({_first_line(e)})"
        return None
    return None


def parse_methods(text: str | None) -> list[MethodSpec]:
    """``--methods``: comma-separated names, or None / ``all`` for every method."""
    if text is None or text.strip() == "all":
        return list(METHODS.values())
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        given = ", ".join(unknown) or "(none given)"
        raise EdgeXcnnError(f"unknown method(s) {given}; choose from {', '.join(METHODS)}")
    return [METHODS[n] for n in dict.fromkeys(names)]


@dataclass(frozen=True)
class ConvLayer:
    """A convolution of the classifier where a CAM can be taken.

    Attributes:
        index: 1-based position among the classifier's convolutions.
        total: how many convolutions the classifier has.
        name: the convolution's module path in the explained model.
        module: the module whose output is the CAM's activation: the ReLU after the convolution
            (conv - BN - ReLU blocks), or the convolution itself when no ReLU follows it.
        size: (h, w) of its output for the model's input size.
    """

    index: int
    total: int
    name: str
    module: nn.Module
    size: tuple[int, int]

    @property
    def label(self) -> str:
        return f"conv {self.index}/{self.total}, {self.size[0]}x{self.size[1]}"


class LogitsOnly(nn.Module):
    """Wrap our models so the libraries see a classifier: ``forward(x)`` returns the logits only."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, tuple) else out


def prepare_for_attribution(model: nn.Module) -> LogitsOnly:
    """A copy to explain: eval mode, frozen weights, ReLUs out of place (guided backprop and hooks need it)."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return LogitsOnly(model)


def classifier_convs(wrapped: LogitsOnly, input_size: tuple[int, int]) -> list[ConvLayer]:
    """The classifier's convolutions in execution order with their output sizes, found by one forward pass."""
    classifier = wrapped.model.classifier
    names = {module: f"model.classifier.{name}" for name, module in classifier.named_modules()}
    order: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [
        module.register_forward_hook(lambda mod, _inp, out: order.append((mod, tuple(out.shape))))
        for module in classifier.modules()
        if isinstance(module, nn.Conv2d | nn.ReLU)
    ]
    try:
        device = next(wrapped.parameters()).device
        channels = wrapped.model.normalize.mean.shape[1]
        with torch.no_grad():
            wrapped(torch.zeros(1, channels, *input_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    found: list[tuple[str, nn.Module, tuple[int, int]]] = []
    for k, (module, shape) in enumerate(order):
        if isinstance(module, nn.Conv2d):
            follower = order[k + 1][0] if k + 1 < len(order) else None
            target = follower if isinstance(follower, nn.ReLU) and order[k + 1][1] == shape else module
            found.append((names[module], target, (shape[2], shape[3])))
    return [ConvLayer(i + 1, len(found), name, mod, size) for i, (name, mod, size) in enumerate(found)]


def cam_layers(convs: list[ConvLayer]) -> dict[str, ConvLayer]:
    """The two layers CAMs are taken at: ``ge8`` (last conv with a map of at least 8x8) and ``last``.

    When they are the same convolution only ``last`` is returned.
    """
    if not convs:
        raise ValueError("the classifier has no convolution")
    last = convs[-1]
    big = [c for c in convs if min(c.size) >= MIN_CAM_SIDE]
    layers = {"last": last}
    if big and big[-1] is not last:
        layers = {"ge8": big[-1], "last": last}
    return layers


class Explainer(abc.ABC):
    """One method on one model (and one layer): ``explain(x, target) -> N x H x W`` float32 numpy maps."""

    spec: MethodSpec
    layer: ConvLayer | None = None

    @abc.abstractmethod
    def explain(self, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        """Maps for images ``x`` (on the model's device) and target classes ``target`` (N,)."""

    def close(self) -> None:  # noqa: B027 (most explainers hold nothing)
        """Release hooks the method holds."""

    def __enter__(self) -> Explainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class XcnnMap(Explainer):
    """XCNN's own heatmap: one forward pass, no gradients; polarity applied so evidence is positive."""

    def __init__(self, model: nn.Module, polarity: int) -> None:
        self.spec = METHODS["xcnn"]
        self.model = model
        self.polarity = polarity

    def explain(self, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            heatmap = self.model(x)[1][:, 0]
        return (heatmap.float() * self.polarity).cpu().numpy()


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """N x 1 x h x w -> N x H x W, bilinear (as Captum's ``LayerAttribution.interpolate``)."""
    up = F.interpolate(maps.detach().float(), size=size, mode="bilinear", align_corners=False)
    return up[:, 0].cpu().numpy()


def _pixel_map(attribution: torch.Tensor) -> np.ndarray:
    """Per-pixel map of an input attribution: absolute value, maximum over the colour channels."""
    return attribution.detach().float().abs().amax(1).cpu().numpy()


class CaptumExplainer(Explainer):
    """A Captum attribution method on a wrapped model."""

    def __init__(self, spec: MethodSpec, wrapped: LogitsOnly, layer: ConvLayer | None, input_size: tuple[int, int]):
        from captum import attr

        self.spec, self.wrapped, self.layer, self.input_size = spec, wrapped, layer, input_size
        module = layer.module if layer is not None else None
        self.method: Any = {
            "gradcam": lambda: attr.LayerGradCam(wrapped, module),
            "guided-gradcam": lambda: attr.GuidedGradCam(wrapped, module),
            "saliency": lambda: attr.Saliency(wrapped),
            "guided-backprop": lambda: attr.GuidedBackprop(wrapped),
            "deconvolution": lambda: attr.Deconvolution(wrapped),
            "input-x-gradient": lambda: attr.InputXGradient(wrapped),
            "integrated-gradients": lambda: attr.IntegratedGradients(wrapped),
        }[spec.name]()

    def explain(self, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        name = self.spec.name
        # Grad-CAM's graph starts at its layer (Captum hooks it); input attributions need the input's
        # gradient, and asking for it here spares Captum's warning on every call.
        x = x.detach().clone().requires_grad_(name != "gradcam")
        with warnings.catch_warnings():
            # Captum says so on every call of guided backprop / deconvolution; it removes its hooks itself
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
            return self._attribute(x, target)

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        name = self.spec.name
        if name == "gradcam":
            return _upsample(self.method.attribute(x, target=target, relu_attributions=True), self.input_size)
        if name == "saliency":
            return _pixel_map(self.method.attribute(x, target=target, abs=True))
        if name == "integrated-gradients":
            found = self.method.attribute(
                x, baselines=torch.zeros_like(x), target=target, n_steps=IG_STEPS, internal_batch_size=len(x) * 8
            )
            return _pixel_map(found)
        return _pixel_map(self.method.attribute(x, target=target))


class GradCamPackageExplainer(Explainer):
    """A method of the ``grad-cam`` package (pytorch_grad_cam); its maps come back scaled to [0, 1]."""

    def __init__(self, spec: MethodSpec, wrapped: LogitsOnly, layer: ConvLayer, batch_size: int = 64):
        import pytorch_grad_cam as pgc

        kind = {
            "gradcam++": pgc.GradCAMPlusPlus,
            "hirescam": pgc.HiResCAM,
            "scorecam": pgc.ScoreCAM,
            "eigencam": pgc.EigenCAM,
        }[spec.name]
        self.spec, self.layer = spec, layer
        self.cam = kind(model=wrapped, target_layers=[layer.module])
        self.cam.batch_size = batch_size  # Score-CAM's forward batches

    def explain(self, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        # Frozen weights: the input carries the graph, so the layer's output has gradients to hook.
        x = x.detach().clone().requires_grad_(self.spec.gradients)
        targets = [ClassifierOutputTarget(int(t)) for t in target]
        return np.asarray(self.cam(input_tensor=x, targets=targets), np.float32)

    def close(self) -> None:
        self.cam.activations_and_grads.release()


def build_explainer(
    spec: MethodSpec,
    model: nn.Module,
    wrapped: LogitsOnly,
    layer: ConvLayer | None,
    *,
    polarity: int,
    input_size: tuple[int, int],
) -> Explainer:
    """The explainer for ``spec`` on ``model`` (``wrapped`` = ``prepare_for_attribution(model)``)."""
    if spec.source == "xcnn":
        return XcnnMap(model, polarity)
    if spec.source == "captum":
        return CaptumExplainer(spec, wrapped, layer, input_size)
    if layer is None:
        raise ValueError(f"{spec.name} needs a layer")
    return GradCamPackageExplainer(spec, wrapped, layer)
