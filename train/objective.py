"""The training objective: classification, plus the localization terms the paper lacks.

The paper trains XCNN with cross-entropy alone; nothing in that loss asks the map to leave the
background and the clutter dark, and the map's sign is arbitrary (the authors flipped it by hand).
Two terms, each a recipe weight (0 = off), fix both:

- **Area prior** (``area_prior``): the mean evidence ``e = (I + 1) / 2`` over the map. Alone it
  shrinks the map to what the classifier cannot do without.
- **Background-activation suppression** (``suppression``), after Wu et al., CVPR 2022 (BAS). BAS
  multiplies a CNN's feature map by the localization map and by its complement and asks the
  background part to activate the class much less than the foreground part. XCNN's classifier sees
  only the map, so its "background features" do not exist apart from the map itself: blanking the
  map's weak pixels would leave nothing for the classifier to respond to, whatever the map is. The
  question BAS asks is asked of the *image* instead: remove the evidence from the input
  (``x' = x (1 - e) + mean colour * e``, soft, so gradients reach the generator), run the whole
  XCNN on ``x'``, and penalize the true classes' scores there. The generator must then mark *every*
  pixel the classifier could still read the class from (a complete map), while the area prior keeps
  it from marking more; together they find the smallest region whose removal kills the evidence.

A third, for multi-object scenes (``loss="bce"``), uses the one label an empty scene has:

- **Empty-scene prior** (``empty_prior``): on training images with no object at all, the mean of the
  brightest ``EMPTY_TOP`` share of the evidence. There every lit pixel is wrong, and the area prior's
  mean over the whole map hardly sees a blob of 3% of the image; this term sees nothing else.

With any term on, +1 is the evidence sign by construction (the terms grade ``(I + 1) / 2``), and
training checks that the polarity rule agrees (``train.polarity``).

The terms start after ``objective_warmup`` epochs of plain classification and ramp in over one
epoch: switched on at step 0 of a fresh model, the area prior collapsed the map to nothing and the
classifier to chance within 2 epochs (measured); after warm-up it did not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_xcnn.models import forward_logits_heatmap


def evidence(heatmap: torch.Tensor) -> torch.Tensor:
    """The map as evidence in [0, 1]: ``(I + 1) / 2`` (+1 = evidence, by construction)."""
    return (heatmap + 1) * 0.5


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """``ce``: softmax cross-entropy on class indices; ``bce``: per-class sigmoid on multi-hot targets."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.cross_entropy(logits, targets)


def area_prior(heatmap: torch.Tensor) -> torch.Tensor:
    """Mean evidence over every pixel of the batch."""
    return evidence(heatmap).mean()


EMPTY_TOP = 0.03  # share of the map the empty-scene prior grades: the runner's smallest box (min_area 0.03)


def empty_prior(heatmap: torch.Tensor, targets: torch.Tensor, top: float = EMPTY_TOP) -> torch.Tensor:
    """Mean of the brightest ``top`` share of evidence over the images whose multi-hot target is all 0.

    Why the brightest share and not the mean: the false boxes on footage are blobs of a few per cent
    of the image on a dark map; their pixels are what the runner boxes. 0 when the batch has no
    empty image.
    """
    empty = targets.reshape(len(targets), -1).sum(1) == 0
    if not empty.any():
        return heatmap.sum() * 0.0
    e = evidence(heatmap[empty]).flatten(1)
    k = max(1, round(top * e.shape[1]))
    return e.topk(k, dim=1).values.mean()


def erase_evidence(images: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
    """Images with their evidence replaced by each image's mean colour, softly (differentiable in the map)."""
    e = evidence(heatmap)
    fill = images.mean(dim=(2, 3), keepdim=True)
    return images * (1 - e) + fill * e


def suppression_loss(logits_erased: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """How much the true classes still score once their evidence is erased (0 = not at all).

    ``bce``: ``-log(1 - sigmoid)`` of every present class, averaged over present classes (images
    without digits add nothing); ``ce``: ``-log(1 - softmax)`` of the true class.
    """
    if kind == "bce":
        present = targets > 0.5
        if not present.any():
            return logits_erased.sum() * 0.0
        return F.softplus(logits_erased[present]).mean()
    p_true = logits_erased.softmax(1).gather(1, targets.view(-1, 1)).squeeze(1)
    return -torch.log1p(-p_true.clamp(max=1 - 1e-6)).mean()


def ramp(epoch_position: float, warmup: float) -> float:
    """Weight factor of the localization terms: 0 during warm-up, then linear to 1 over one epoch."""
    return float(min(max(epoch_position - warmup, 0.0), 1.0))


def localization_terms(
    model: nn.Module,
    images: torch.Tensor,
    heatmap: torch.Tensor,
    targets: torch.Tensor,
    *,
    kind: str,
    area_weight: float,
    bas_weight: float,
    bas_fraction: float,
    empty_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The weighted area prior, empty-scene prior and suppression terms of one batch (those with weight > 0)."""
    terms: dict[str, torch.Tensor] = {}
    if area_weight > 0:
        terms["area"] = area_weight * area_prior(heatmap)
    if empty_weight > 0:
        if kind != "bce":
            raise ValueError("the empty-scene prior needs multi-hot targets (loss 'bce')")
        terms["empty"] = empty_weight * empty_prior(heatmap, targets)
    if bas_weight > 0:
        n = max(1, round(images.shape[0] * bas_fraction))
        erased = erase_evidence(images[:n], heatmap[:n].float())
        logits_erased, _ = forward_logits_heatmap(model, erased)
        terms["bas"] = bas_weight * suppression_loss(logits_erased.float(), targets[:n], kind)
    return terms
