"""The training loop: the recipe's objective (``train.objective``), one process or many under torchrun.

Validation runs every epoch in eval mode without gradients (the authors' code forgot both); for
XCNN on a box-labelled split it also grades the map (GT-known loc, PxAP: ``train.threshold``).
Rank 0 writes ``last.safetensors`` every epoch and ``best.safetensors`` when validation accuracy
improves, each with the model's metadata (polarity decided from the model itself), and
``train_state.safetensors`` for ``--resume``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from edge_xcnn.checkpoint import _unwrap, save_checkpoint
from edge_xcnn.errors import BadData, BadModelFile, TrainingFailed
from edge_xcnn.fileio import atomic_output
from edge_xcnn.meta import ModelMeta
from edge_xcnn.models import build_model, forward_logits_heatmap
from edge_xcnn.models.generator import compile_instance_norm
from edge_xcnn.train.augment import Augment
from edge_xcnn.train.curves import draw_curves
from edge_xcnn.train.datasets.base import LabelledImages, MemoryCache, Subset, default_processes
from edge_xcnn.train.objective import classification_loss, localization_terms, ramp
from edge_xcnn.train.polarity import decide_polarity
from edge_xcnn.train.recipes import Recipe, recipe_splits
from edge_xcnn.train.state import load_train_state, save_train_state
from edge_xcnn.train.threshold import (
    ValidationMaps,
    choose_threshold,
    grade_maps,
    has_map_truth,
    map_truth,
    validation_maps,
)
from edge_xcnn.train.torch_data import TensorImages

POLARITY_IMAGES = 256  # validation images used to decide the heatmap's sign


@dataclass
class TrainOptions:
    """What ``edge-xcnn train`` was asked for; the recipe holds everything else."""

    recipe: Recipe
    out_dir: Path
    arch: str = "xcnn"
    data_path: Path | None = None
    data_spec: str = ""
    resume: bool = False
    device: str | None = None  # None = CUDA when available, else CPU
    amp: bool | None = None  # None = on with CUDA
    workers: int | None = None
    fig7_channels: int | None = None
    limit_train: int | None = None  # for smoke runs: N training images spread over the split
    limit_val: int | None = None
    quiet: bool = False


@dataclass
class TrainResult:
    """Where a run's checkpoints went and how it went."""

    best: Path
    last: Path
    best_val_acc: float
    history: list[dict[str, float]] = field(default_factory=list)
    wall_s: float = 0.0


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def _distributed(device_type: str) -> Iterator[_Dist]:
    """Join the torchrun process group when there is one; always leave it cleanly."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield _Dist()
        return
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    try:
        yield _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
        # The first rank to leave would otherwise abort the others (seen with gloo, torch 2.13).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def train(options: TrainOptions) -> TrainResult:
    """Train one model as ``options`` says; returns where the checkpoints went."""
    cuda = torch.cuda.is_available() and (options.device is None or options.device.startswith("cuda"))
    with _distributed("cuda" if cuda else "cpu") as ddp:
        device = torch.device(f"cuda:{ddp.local_rank}" if cuda else (options.device or "cpu"))
        if cuda:
            torch.cuda.set_device(device)
        compile_instance_norm(options.recipe.compile)
        try:
            return _train(options, ddp, device)
        finally:
            compile_instance_norm(False)


def _limit(dataset: LabelledImages, limit: int | None) -> LabelledImages:
    """``limit`` images spread evenly over the split (datasets are often sorted by class)."""
    if limit is None or limit >= len(dataset):
        return dataset
    return Subset(dataset, np.linspace(0, len(dataset) - 1, limit).round().astype(np.int64))


def _train(options: TrainOptions, ddp: _Dist, device: torch.device) -> TrainResult:
    recipe = options.recipe
    out = options.out_dir
    # soft_wrap: one line per epoch in a log, whatever the width (piped, rich assumes 80 columns and cuts).
    console = Console(stderr=True, quiet=options.quiet or not ddp.main, soft_wrap=True)
    torch.manual_seed(recipe.seed)
    splits = recipe_splits(recipe, options.data_path)
    train_set = _limit(splits["train"], options.limit_train)
    val_set = _limit(splits["val"], options.limit_val)
    for name, part in (("training", train_set), ("validation", val_set)):
        if len(part) == 0:
            raise BadData(f"the {name} split of {options.data_spec or recipe.name} is empty")
    if options.workers is not None:
        workers = options.workers
    else:  # small data is cached and read in the main process; else decode in workers
        workers = 0 if recipe.cache else (4 if device.type == "cuda" else 1)
    if recipe.cache and workers == 0:
        train_set, val_set = MemoryCache(train_set), MemoryCache(val_set)
        if ddp.world == 1:  # under torchrun each rank reads its own shard: it makes those as they come
            _fill(console, {"training": train_set, "validation": val_set})
    meta = recipe.meta(list(splits["train"].classes), options.arch, options.fig7_channels, options.data_spec)
    if recipe.generator_starts > 1 and meta.arch.kind == "xcnn":  # refused before any training
        if ddp.world > 1:
            raise BadData("--generator-starts runs in one process: train without torchrun, or with one start")
        if not has_map_truth(val_set, meta):
            raise BadData("--generator-starts needs a validation split with boxes: it grades each start's map there")

    # channels_last: oneDNN's fast layout on CPUs (2x here) and tensor cores' on GPUs.
    model: nn.Module = build_model(meta).to(device, memory_format=torch.channels_last)
    if recipe.map_start is not None and meta.arch.kind == "xcnn":
        _start_map_at(model, recipe.map_start)
    if recipe.classifier_pretrain_epochs and meta.arch.kind == "xcnn" and not options.resume:
        from edge_xcnn.train.pretrain import pretrain_classifier

        canvases = min(recipe.train_images, options.limit_train or recipe.train_images)
        pretrain_classifier(
            model.classifier, size=meta.input_size[0], seed=recipe.seed, images=canvases,
            epochs=recipe.classifier_pretrain_epochs, lr=recipe.lr, betas=recipe.betas,
            batch_size=recipe.batch_size, device=device, console=console, warp_glyphs=recipe.glyph_warps,
        )  # fmt: skip
    if ddp.world > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(
        _param_groups(_unwrap(model), recipe), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay
    )
    # The weights validated and saved: the model's own, or their moving average (``recipe.ema``).
    averaged = _averaged(_unwrap(model), recipe.ema)
    kept: nn.Module = model if averaged is None else averaged.module
    start_epoch, best_acc, history = 0, -1.0, []
    if options.resume:
        start_epoch, best_acc, history = _resume(out, model, optimizer, meta, device, averaged)
        console.print(f"resuming at epoch {start_epoch + 1}/{recipe.epochs} (best val {best_acc:.2%})")

    use_amp = amp_available(device) if options.amp is None else options.amp
    amp_dtype = torch.float16 if device.type == "cuda" and not torch.cuda.is_bf16_supported() else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    augment = Augment(recipe.crop_padding, recipe.hflip)
    train_data = TensorImages(train_set, meta, augment, multilabel=recipe.loss == "bce")
    val_loader = _loader(TensorImages(val_set, meta), recipe.batch_size, workers, ddp, shuffle=False, seed=0)
    polarity_batch = _first_images(val_set, meta, POLARITY_IMAGES).to(device)
    localizes = meta.arch.kind == "xcnn" and recipe.fixes_polarity
    # Boxes on validation: the map is graded every epoch (``train.threshold``).
    truth = map_truth(val_set) if meta.arch.kind == "xcnn" and has_map_truth(val_set, meta) else None
    started = time.perf_counter()
    console.print(
        f"training {meta.arch.kind} ({meta.arch.classifier}, {meta.input_size[0]}x{meta.input_size[1]}) "
        f"recipe {recipe.name}: {len(train_set)} train / {len(val_set)} val images, {ddp.world} process(es) on {device}"
    )
    step_once = _Step(recipe, localizes, device, use_amp, amp_dtype, scaler)
    # The first epoch's loader, its first batches already drawn where several generator starts are tried.
    started_epoch: tuple[DataLoader, Iterator[Any], torch.Tensor, int] | None = None
    start_note: dict[str, Any] = {}  # the starts' grades, in the first epoch's row
    if recipe.generator_starts > 1 and start_epoch == 0 and meta.arch.kind == "xcnn":
        if truth is None:  # some image lacks a box (the first one was checked before the model was built)
            raise BadData("--generator-starts needs a validation split with boxes: it grades each start's map there")
        started_epoch, optimizer, averaged, start_note = _choose_start(
            model, meta, recipe, train_data, val_set, polarity_batch, step_once, optimizer, averaged, device,
            console, workers, ddp,
        )  # fmt: skip
        kept = model if averaged is None else averaged.module
    for epoch in range(start_epoch, recipe.epochs):
        epoch_start = time.perf_counter()
        if epoch == 0 and started_epoch is not None:
            loader, batches, sums, first_step = started_epoch
        else:
            loader = _loader(train_data, recipe.batch_size, workers, ddp, shuffle=True, seed=recipe.seed * 1000 + epoch)
            batches, first_step = iter(loader), 0
            sums = torch.zeros(4, device=device)  # loss * n, top-1 hits, images with a top-1, n
        model.train()
        with _progress(console, f"epoch {epoch + 1}/{recipe.epochs}", len(loader)) as (progress, task):
            progress.advance(task, first_step)
            for step, (images, labels) in enumerate(batches, start=first_step):
                step_once(model, optimizer, averaged, images, labels, epoch, step / len(loader), sums)
                if step % 10 == 0:  # reading the sums waits for the GPU: not every step
                    progress.update(task, stats=f"loss {sums[0] / sums[3]:.3f}  acc {sums[1] / sums[2]:.1%}")
                progress.advance(task)
        if ddp.world > 1:
            dist.all_reduce(sums)
        # One process sees every validation image in order: its pass also gives the maps to grade.
        val_acc, val_maps = validate(kept, val_loader, device, ddp, keep_maps=truth is not None and ddp.world == 1)
        row = {
            "epoch": epoch + 1,
            "loss": float(sums[0] / sums[3]),
            "train_acc": float(sums[1] / sums[2]),
            "val_acc": val_acc,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - epoch_start,
        }
        if epoch == 0:
            row |= start_note
        history.append(row)
        improved = val_acc > best_acc
        best_acc = max(best_acc, val_acc)
        if ddp.main:
            # Once the terms are fully on, and the model reads the map at all (a model at chance has no
            # evidence for the check to find: its sign says nothing).
            learnt = val_acc >= 2.0 / meta.num_classes
            checked = localizes and learnt and epoch + 1 > recipe.objective_warmup + 1
            saved = _with_polarity(kept, meta, polarity_batch, fixed_sign=checked).replace(
                metrics={"val_acc": val_acc, "epoch": epoch + 1}
            )
            if truth is not None:
                found = (
                    ValidationMaps(val_maps, *truth)
                    if val_maps is not None
                    else validation_maps(_unwrap(kept), val_set, saved, device)
                )
                row |= grade_maps(found, saved.polarity).as_row()
            save_checkpoint(out / "last.safetensors", kept, saved)
            if improved:
                save_checkpoint(out / "best.safetensors", kept, saved)
            _write_summary(
                out,
                recipe,
                options,
                ddp,
                history,
                best_acc,
                time.perf_counter() - started,
                len(train_set),
                len(loader.sampler),
            )
            save_train_state(
                out / "train_state.safetensors",
                optimizer,
                {"epoch": epoch + 1, "best_val_acc": best_acc, "history": history},
                # With an average, last.safetensors holds it: the raw weights resume from here.
                {} if averaged is None else _raw_weights(model, averaged),
            )
        console.print(
            f"epoch {epoch + 1}/{recipe.epochs}  loss {row['loss']:.4f}  train {row['train_acc']:.2%}  "
            f"val {val_acc:.2%}{' *' if improved else ''}{_loc_note(row)}  {row['seconds']:.1f}s"
        )
    if ddp.main and recipe.threshold is None and meta.arch.kind == "xcnn":
        chosen, val_loc = _store_val_threshold(out, kept, val_set, device, console)
        history[-1] = history[-1] | {"val_gt_known_loc_of_best": val_loc, "threshold": chosen}
        console.print(f"heatmap threshold chosen on validation: {chosen:.2f} (best's GT-known loc there {val_loc:.2%})")
    wall = time.perf_counter() - started
    if ddp.main:
        _write_summary(out, recipe, options, ddp, history, best_acc, wall, len(train_set), len(train_data) // ddp.world)
    return TrainResult(out / "best.safetensors", out / "last.safetensors", best_acc, history, wall)


@dataclass
class _Step:
    """One optimization step of the recipe's objective: the epochs' and the generator starts' trials."""

    recipe: Recipe
    localizes: bool
    device: torch.device
    use_amp: bool
    amp_dtype: torch.dtype
    scaler: torch.amp.GradScaler

    def __call__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        averaged: torch.optim.swa_utils.AveragedModel | None,
        images: torch.Tensor,
        labels: torch.Tensor,
        epoch: int,
        fraction: float,
        sums: torch.Tensor,
    ) -> None:
        """One step; adds its loss * n, top-1 hits, images with a top-1 and n to ``sums``."""
        recipe, device = self.recipe, self.device
        images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        _set_lr(optimizer, recipe, epoch, fraction)  # per step: the cosine schedule moves
        weight = ramp(epoch + fraction, recipe.objective_warmup) if self.localizes else 0.0
        with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            logits, heatmap = forward_logits_heatmap(model, images)
            loss = classification_loss(logits.float(), labels, recipe.loss)
            if weight > 0 and heatmap is not None:
                terms = localization_terms(
                    model, images, heatmap.float(), labels, kind=recipe.loss,
                    area_weight=recipe.area_prior * weight, bas_weight=recipe.bas * weight,
                    bas_fraction=recipe.bas_fraction, empty_weight=recipe.empty_prior * weight,
                )  # fmt: skip
                loss = loss + sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
        if averaged is not None:
            averaged.update_parameters(_unwrap(model))
        n, hits, counted = _batch_hits(logits.detach(), labels)
        sums += torch.stack([loss.detach() * n, hits, counted, torch.tensor(float(n), device=device)])


def _choose_start(
    model: nn.Module,
    meta: ModelMeta,
    recipe: Recipe,
    train_data: TensorImages,
    val_set: LabelledImages,
    polarity_batch: torch.Tensor,
    step_once: _Step,
    optimizer: torch.optim.Optimizer,
    averaged: torch.optim.swa_utils.AveragedModel | None,
    device: torch.device,
    console: Console,
    workers: int,
    ddp: _Dist,
) -> tuple[
    tuple[DataLoader, Iterator[Any], torch.Tensor, int],
    torch.optim.Optimizer,
    torch.optim.swa_utils.AveragedModel | None,
    dict[str, Any],
]:
    """Try ``recipe.generator_starts`` generator starts on the first epoch's first batches (``train.starts``).

    Every start trains on the same batches from the same pretrained classifier; the winner's weights,
    optimizer, moving average and loss sums go on into the rest of the first epoch. Start 0 is tried
    with the run's own optimizer, so a run whose own start wins is the run without selection.
    """
    from edge_xcnn.train.starts import choose_start, fresh_generator

    loader = _loader(train_data, recipe.batch_size, workers, ddp, shuffle=True, seed=recipe.seed * 1000)
    batches = iter(loader)
    steps = min(recipe.start_steps, len(loader) - 1)
    first = [next(batches) for _ in range(steps)]  # drawn once: each start sees the same ones
    scaler_start = step_once.scaler.state_dict()

    def trial(net: nn.Module, index: int) -> tuple[float, Any]:
        step_once.scaler.load_state_dict(scaler_start)
        opt = optimizer if index == 0 else torch.optim.Adam(
            _param_groups(net, recipe), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay
        )  # fmt: skip
        avg = averaged if index == 0 else _averaged(net, recipe.ema)
        sums = torch.zeros(4, device=device)
        net.train()
        with _progress(console, f"generator start {index + 1}/{recipe.generator_starts}", steps) as (progress, task):
            for step, (images, labels) in enumerate(first):
                step_once(net, opt, avg, images, labels, 0, step / len(loader), sums)
                progress.advance(task)
        graded = net if avg is None else avg.module
        polarity = _with_polarity(graded, meta, polarity_batch).polarity
        quality = grade_maps(validation_maps(graded, val_set, meta, device), polarity)
        score = quality.pxap if quality.pxap is not None else quality.gt_known
        return score, (opt, avg, sums, step_once.scaler.state_dict())

    def report(index: int, score: float) -> None:
        console.print(f"generator start {index + 1}/{recipe.generator_starts}: val map {score:.1%} after {steps} steps")

    def weights(index: int) -> dict[str, torch.Tensor]:
        return fresh_generator(meta, recipe.seed, index)

    choice = choose_start(model, recipe.generator_starts, weights, trial, report)
    opt, avg, sums, scaler_state = choice.carried
    step_once.scaler.load_state_dict(scaler_state)
    console.print(f"generator start {choice.index + 1} kept")
    note = {"start_scores": choice.scores, "start_kept": choice.index, "start_steps": steps}
    return (loader, batches, sums, steps), opt, avg, note


def _loc_note(row: dict[str, float]) -> str:
    """The epoch line's map figures (XCNN on a box-labelled validation split), else nothing."""
    if "val_gt_known" not in row:
        return ""
    pxap = f"  PxAP {row['val_pxap']:.1%}" if "val_pxap" in row else ""
    return f"  loc {row['val_gt_known']:.1%} @{row['val_loc_threshold']:.2f}{pxap}"


def _start_map_at(model: nn.Module, value: float) -> None:
    """Set the context generator's head bias so that its map starts near ``value`` (``recipe.map_start``)."""
    with torch.no_grad():
        model.generator.head.bias.fill_(math.atanh(value))


def _set_lr(optimizer: torch.optim.Optimizer, recipe: Recipe, epoch: int, fraction: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = recipe_lr(recipe, epoch, fraction) * group["lr_scale"]


def _param_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """One group per learning-rate scale: XCNN's classifier may learn slower than its generator."""
    classifier = getattr(model, "classifier", None)
    if recipe.classifier_lr_scale == 1.0 or not hasattr(model, "generator") or classifier is None:
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]
    inner = {id(p) for p in classifier.parameters()}
    rest = [p for p in model.parameters() if id(p) not in inner]
    return [
        {"params": rest, "lr_scale": 1.0},
        {"params": list(classifier.parameters()), "lr_scale": recipe.classifier_lr_scale},
    ]


def _batch_hits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(images, top-1 hits, images counted): multi-hot targets count a hit when the arg-max is present."""
    n = labels.shape[0]
    pred = logits.argmax(1)
    if labels.ndim == 2:  # multi-label: only images with at least one object have a top-1
        counted = labels.amax(1) > 0.5
        hits = (labels.gather(1, pred.view(-1, 1)).squeeze(1) > 0.5) & counted
        return n, hits.sum().float(), counted.sum().float()
    return n, (pred == labels).sum().float(), torch.tensor(float(n), device=logits.device)


def _store_val_threshold(
    out: Path, model: nn.Module, val_set: LabelledImages, device: torch.device, console: Console
) -> tuple[float, float]:
    """Choose the heatmap threshold on the validation split and write it into both checkpoints.

    The WSOL protocol (Choe et al., CVPR 2020) allows tuning the threshold on a small box-labelled
    split held out of test; ours is the validation split, never test.
    """
    from safetensors.torch import load_file

    from edge_xcnn.checkpoint import read_meta

    best_meta = read_meta(out / "best.safetensors")
    net = _unwrap(model)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(load_file(str(out / "best.safetensors"), device=str(device)))
    chosen, scores = choose_threshold(net, val_set, best_meta, device)
    save_checkpoint(out / "best.safetensors", net, best_meta.replace(threshold=chosen))
    net.load_state_dict(state)
    last_meta = read_meta(out / "last.safetensors")
    save_checkpoint(out / "last.safetensors", net, last_meta.replace(threshold=chosen))
    return chosen, float(scores.get(chosen, float("nan")))


def _write_summary(
    out: Path,
    recipe: Recipe,
    options: TrainOptions,
    ddp: _Dist,
    history: list[dict[str, float]],
    best_acc: float,
    wall: float,
    train_images: int,
    per_process: int,
) -> None:
    """``results.json`` and its curves (``results.png``), rewritten every epoch so a long run can be followed."""
    summary = {
        "recipe": recipe.name,
        "arch": options.arch,
        "best_val_acc": best_acc,
        "wall_s": wall,
        "world_size": ddp.world,
        "train_images": train_images,
        "images_per_process": per_process,
        "history": history,
    }
    with atomic_output(out / "results.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    draw_curves(history, out / "results.png", title=f"{recipe.name} ({options.arch}), seed {recipe.seed}")


def _loader(data: TensorImages, batch: int, workers: int, ddp: _Dist, shuffle: bool, seed: int) -> DataLoader:
    """A loader whose order (and augmentation) depends only on ``seed``, so --resume reproduces runs."""
    generator = torch.Generator().manual_seed(seed)
    sampler = DistributedSampler(data, ddp.world, ddp.rank, shuffle=shuffle, seed=seed) if ddp.world > 1 else None
    return DataLoader(
        data,
        batch_size=batch,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        generator=generator,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )


def evaluate_accuracy(model: nn.Module, loader: DataLoader, device: torch.device, ddp: _Dist | None = None) -> float:
    """Top-1 accuracy in eval mode without gradients, summed over every process."""
    return validate(model, loader, device, ddp)[0]


@torch.no_grad()
def validate(
    model: nn.Module, loader: DataLoader, device: torch.device, ddp: _Dist | None = None, keep_maps: bool = False
) -> tuple[float, np.ndarray | None]:
    """Top-1 accuracy (every process), and with ``keep_maps`` the heatmaps in the loader's order.

    Why keep them: grading the map every epoch needs the same forward pass over validation, and
    on 2 cores a second pass costs ~2.5 s of a ~90 s epoch.
    """
    was_training = model.training
    model.eval()
    counts = torch.zeros(2, device=device)
    maps: list[np.ndarray] = []
    for images, labels in loader:
        logits, heatmap = forward_logits_heatmap(model, images.to(device))
        if keep_maps and heatmap is not None:
            maps.append(heatmap[:, 0].float().cpu().numpy())
        labels = labels.to(device)
        counts += torch.stack(
            [
                (logits.argmax(1) == labels).sum().float(),
                torch.tensor(labels.numel(), device=device, dtype=torch.float32),
            ]
        )
    if ddp is not None and ddp.world > 1:
        dist.all_reduce(counts)
    model.train(was_training)
    return float(counts[0] / counts[1].clamp_min(1)), (np.concatenate(maps) if maps else None)


def _first_images(dataset: LabelledImages, meta: ModelMeta, count: int) -> torch.Tensor:
    data = TensorImages(dataset, meta)
    return torch.stack([data[i][0] for i in range(min(count, len(data)))])


def _with_polarity(model: nn.Module, meta: ModelMeta, images: torch.Tensor, fixed_sign: bool = False) -> ModelMeta:
    """The metadata with the polarity the model shows; with ``fixed_sign`` it must be +1, or training fails."""
    if meta.arch.kind != "xcnn":
        return meta
    polarity = decide_polarity(_unwrap(model), images, meta.threshold)
    if fixed_sign and polarity != 1:
        raise TrainingFailed(
            "the polarity check found the evidence at -1, but the localization objective makes it +1 by "
            "construction: the map has inverted or collapsed (try a longer --objective-warmup or lower weights)"
        )
    return meta.replace(polarity=polarity)


def amp_available(device: torch.device) -> bool:
    """Mixed precision by default on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX: ~1.5-2x)."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def recipe_lr(recipe: Recipe, epoch: int, fraction: float = 0.0) -> float:
    """The learning rate ``fraction`` of the way through ``epoch`` (a pure function, so resuming is exact).

    ``step``: the authors' schedule, lr x0.1 from half the epochs on. ``cosine``: half a cosine from lr
    to 0 over the whole run, per step: no plateau of the high rate, no abrupt drop. ``lr_warmup``
    scales either linearly from 0 over its first epochs (Adam's first steps on a fresh generator are
    its largest and noisiest).
    """
    position = epoch + fraction
    warm = min(position / recipe.lr_warmup, 1.0) if recipe.lr_warmup > 0 else 1.0
    if recipe.lr_schedule == "cosine":
        return warm * recipe.lr * 0.5 * (1.0 + math.cos(math.pi * min(position / recipe.epochs, 1.0)))
    return warm * recipe.lr * (0.1 if epoch >= max(1, recipe.epochs // 2) else 1.0)


def _averaged(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``model``'s weights and batch-norm statistics; None when off."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _raw_weights(model: nn.Module, averaged: torch.optim.swa_utils.AveragedModel) -> dict[str, torch.Tensor]:
    tensors = {f"raw.{k}": v for k, v in _unwrap(model).state_dict().items()}
    tensors["ema.n_averaged"] = averaged.n_averaged
    return tensors


def _resume(
    out: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: ModelMeta,
    device: torch.device,
    averaged: torch.optim.swa_utils.AveragedModel | None = None,
) -> tuple[int, float, list[dict[str, float]]]:
    from safetensors.torch import load_file

    from edge_xcnn.checkpoint import read_meta

    last = out / "last.safetensors"
    if not last.is_file():
        raise BadModelFile(f"--resume: no checkpoint at {last}; train without --resume first")
    saved = read_meta(last)
    if saved.arch != meta.arch or saved.input_size != meta.input_size or saved.classes != meta.classes:
        raise BadModelFile(f"--resume: {last} was trained with another architecture or classes than this recipe")
    saved_weights = load_file(str(last), device=str(device))
    scalars, extra = load_train_state(out / "train_state.safetensors", optimizer)
    if averaged is None:
        if "ema.n_averaged" in extra:  # last.safetensors holds the average, not the weights to go on from
            raise BadModelFile(f"--resume: {out} was trained with --ema; resume it with the same --ema")
        _unwrap(model).load_state_dict(saved_weights)
    else:
        if "ema.n_averaged" not in extra:
            raise BadModelFile(f"--resume: {out} was trained without --ema; resume it without --ema")
        averaged.module.load_state_dict(saved_weights)
        averaged.n_averaged.copy_(extra["ema.n_averaged"])
        raw = {k.removeprefix("raw."): v.to(device) for k, v in extra.items() if k.startswith("raw.")}
        _unwrap(model).load_state_dict(raw)
    return int(scalars["epoch"]), float(scalars["best_val_acc"]), list(scalars["history"])


def _fill(console: Console, caches: dict[str, MemoryCache]) -> None:
    """Make the cached splits' samples before training, on every core (``MemoryCache.fill``)."""
    processes = default_processes()
    for name, cache in caches.items():
        started = time.perf_counter()
        with _progress(console, f"making {name} images", len(cache)) as (progress, task):
            cache.fill(processes, lambda n, progress=progress, task=task: progress.advance(task, n))
        seconds = time.perf_counter() - started
        if seconds > 5:
            console.print(f"{len(cache)} {name} images made in {seconds:.0f}s ({processes} processes)")


@contextlib.contextmanager
def _progress(console: Console, description: str, total: int) -> Iterator[tuple[Progress, Any]]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=console.quiet or not console.is_terminal,
    )
    with progress:
        task = progress.add_task(description, total=total, stats="")
        yield progress, task
