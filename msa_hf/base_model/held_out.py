# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The base model's synthetic batches and its held-out check: prompts simulated from the data engine's
masks, one decoder pass, and Dice by protocol next to the "fill the box" baseline."""

from __future__ import annotations

import numpy as np
import torch
from transformers import SamModel

from msa_hf.base_model.data_engine import SyntheticConfig, SyntheticSegmentationDataset
from msa_hf.data.transforms import SamNormalize
from msa_hf.evaluation.decoding import MaskDecoding, decode_protocols
from msa_hf.evaluation.metrics.batched import box_fill_dice, dice_scores
from msa_hf.processing.mask_outputs import best_mask_logits, upsample_mask_logits
from msa_hf.processing.prompts import box_from_mask, sample_point_prompt

EVAL_PROMPTS = ("box", "points1", "points3", "iterative")


def pixel_values_from_uint8(images: torch.Tensor) -> torch.Tensor:
    """`(B, H, W, 3)` uint8 -> `(B, 3, H, W)` SAM-normalised float."""
    return SamNormalize()(images.permute(0, 3, 1, 2).float() / 255.0)


def samples_at_size(
    images: torch.Tensor, masks: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Data-engine samples in a model frame of another side: images `(N, s, s, 3)` uint8 resized bilinearly
    and masks `(N, s, s)` bool by nearest neighbour to `(N, size, size, 3)` and `(N, size, size)`. The engine
    draws at the small base's side; a ViT-B SAM takes 1024 pixels."""
    if images.shape[1] == size:
        return images, masks
    resized = torch.nn.functional.interpolate(
        images.permute(0, 3, 1, 2).float(), size=(size, size), mode="bilinear", align_corners=False
    )
    images = resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    masks = torch.nn.functional.interpolate(masks[:, None].float(), size=(size, size), mode="nearest")
    return images, masks[:, 0].bool()


def collate_samples(items: list[dict]) -> dict[str, torch.Tensor]:
    """Data-engine samples -> `{"images": (B, S, S, 3) uint8, "masks": (B, S, S) bool}`."""
    return {
        "images": torch.from_numpy(np.stack([i["image"] for i in items])),
        "masks": torch.from_numpy(np.stack([i["mask"] for i in items])),
    }


def box_prompts(masks: torch.Tensor, rng: np.random.Generator, jitter: float) -> torch.Tensor:
    """`(B, S, S)` masks -> `(B, 1, 4)` boxes, each side jittered by up to `jitter` of the box's size."""
    return torch.from_numpy(np.stack([box_from_mask(m.numpy(), jitter, rng) for m in masks]))[:, None]


def click_prompts(
    masks: torch.Tensor, rng: np.random.Generator, count: int, interior_first: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, S, S)` masks -> `count` positive clicks each: points `(B, 1, count, 2)`, labels `(B, 1, count)`."""
    prompts = [
        sample_point_prompt(m.numpy(), count, 0, rng, "interior" if interior_first else "uniform")
        for m in masks
    ]
    points = torch.from_numpy(np.stack([p.points for p in prompts]))[:, None]
    labels = torch.from_numpy(np.stack([p.labels for p in prompts]))[:, None]
    return points, labels


def predict(
    model: SamModel,
    pixel_values: torch.Tensor | None = None,
    image_embeddings: torch.Tensor | None = None,
    input_points: torch.Tensor | None = None,
    input_labels: torch.Tensor | None = None,
    input_boxes: torch.Tensor | None = None,
    input_masks: torch.Tensor | None = None,
    multimask: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One decoder pass. Returns `(low-res logits (B, M, h, w), iou (B, M), best low-res logits (B, 1, h, w))`,
    the best mask chosen by the IoU head when `multimask`."""
    outputs = model(
        pixel_values=pixel_values,
        image_embeddings=image_embeddings,
        input_points=input_points,
        input_labels=input_labels,
        input_boxes=input_boxes,
        input_masks=input_masks,
        multimask_output=multimask,
    )
    return outputs.pred_masks[:, 0], outputs.iou_scores[:, 0], best_mask_logits(outputs)


@torch.no_grad()
def evaluate_prompted_segmentation(
    model: SamModel, images: torch.Tensor, masks: torch.Tensor, batch_size: int = 50, seed: int = 1
) -> dict[str, float]:
    """Mean Dice at the input size by protocol (the evaluation core's), next to the box-fill baseline.

    Args:
        images: `(N, S, S, 3)` uint8; masks: `(N, S, S)` bool targets.
    Returns:
        `{"box", "points1", "points3", "iterative", "box_fill"}` -> mean Dice. Box: the tight box. points1:
        the most interior point, best of three masks by the IoU head. points3: the most interior point plus
        two uniform clicks (a prompt set of its own). iterative: points1, then two rounds of an error click
        plus the previous logits as mask prompt.
    """
    model.eval()
    rng = np.random.default_rng(seed)
    size = images.shape[1]
    device = model.device
    scores: dict[str, list[torch.Tensor]] = {name: [] for name in (*EVAL_PROMPTS, "box_fill")}
    decode = MaskDecoding(model)
    for start in range(0, len(images), batch_size):
        image_batch, mask_batch = images[start : start + batch_size], masks[start : start + batch_size]
        decode.set_image_embeddings(
            model.get_image_embeddings(pixel_values_from_uint8(image_batch.to(device)))
        )
        # the prompts are drawn in a fixed order from one generator, so the scores repeat exactly
        boxes = box_prompts(mask_batch, rng, 0.0).to(device)
        points, labels = (t.to(device) for t in click_prompts(mask_batch, rng, 1, interior_first=True))
        three = [sample_point_prompt(m.numpy(), 3, 0, rng, "interior") for m in mask_batch]
        rounds = decode_protocols(
            decode,
            ("box", "points1", "iterative"),
            {"input_boxes": boxes, "input_points": points, "input_labels": labels},
            mask_batch.float(),
            clicks=3,
        )
        three_points = {
            "input_points": torch.from_numpy(np.stack([p.points for p in three]))[:, None].to(device),
            "input_labels": torch.from_numpy(np.stack([p.labels for p in three]))[:, None].to(device),
        }
        rounds.update(decode_protocols(decode, ("points3",), three_points))
        for name in EVAL_PROMPTS:
            predicted = upsample_mask_logits(rounds[name][-1], size)[:, 0].cpu() > 0
            scores[name].append(dice_scores(predicted, mask_batch))
        scores["box_fill"].append(box_fill_dice(mask_batch))
    return {name: float(torch.cat(values).mean()) for name, values in scores.items()}


def held_out_set(
    count: int, seed: int = 1, config: SyntheticConfig | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` held-out synthetic samples (a seed the training stream never uses): images, masks."""
    dataset = SyntheticSegmentationDataset(count, seed=seed + 1_000_003, config=config)
    items = [dataset[i] for i in range(count)]
    return collate_samples(items)["images"], collate_samples(items)["masks"]
