# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""SAM-shaped stand-ins whose answers are known, for testing the code around a model (evaluation, volume
prediction, the demo) without a trained one. They take `get_image_embeddings` + `forward(image_embeddings,
...)` calls like `SamModel`, and their "embedding" is the pixel batch itself."""

from __future__ import annotations

from types import SimpleNamespace

import torch


class BoxFillSam(torch.nn.Module):
    """A SAM-shaped stand-in predicting the prompt box filled (or, for points, a 5x5 square at the last click)."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.config = SimpleNamespace(vision_config=SimpleNamespace(image_size=image_size))
        self.device = torch.device("cpu")

    def get_image_embeddings(self, pixel_values):
        return pixel_values

    def forward(
        self, image_embeddings, input_boxes=None, input_points=None, multimask_output=False, **kwargs
    ):
        size = image_embeddings.shape[-1]
        logits = torch.full((len(image_embeddings), 1, 3, size, size), -10.0)
        for index in range(len(image_embeddings)):
            if input_boxes is not None:
                x0, y0, x1, y1 = input_boxes[index, 0].long().tolist()
            else:
                x, y = input_points[index, 0, -1].long().tolist()
                x0, y0, x1, y1 = x - 2, y - 2, x + 2, y + 2
            logits[index, 0, :, max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = 10.0
        return SimpleNamespace(pred_masks=logits, iou_scores=torch.ones(len(image_embeddings), 1, 3))


class BrightInBoxSam(BoxFillSam):
    """A SAM-shaped stand-in whose mask is the bright pixels (normalised value > 0) inside the prompt box."""

    def forward(self, image_embeddings, input_boxes=None, multimask_output=False, **kwargs):
        size = image_embeddings.shape[-1]
        bright = image_embeddings[:, 0] > 0
        inside = torch.zeros_like(bright)
        for index in range(len(image_embeddings)):
            x0, y0, x1, y1 = input_boxes[index, 0].round().long().tolist()
            inside[index, max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
        logits = torch.where(bright & inside, 10.0, -10.0)[:, None, None].expand(-1, 1, 3, size, size)
        return SimpleNamespace(pred_masks=logits, iou_scores=torch.ones(len(image_embeddings), 1, 3))


class FillPromptedSlices(torch.nn.Module):
    """A depth-model stand-in: every slice with a real click is predicted all foreground."""

    def __init__(self, image_size: int, num_slices: int) -> None:
        super().__init__()
        self.config = SimpleNamespace(
            vision_config=SimpleNamespace(image_size=image_size), num_slices=num_slices
        )
        self.device = torch.device("cpu")

    def get_image_embeddings(self, pixel_values):
        volumes, _, depth, height, width = pixel_values.shape  # a window of D slices
        return torch.zeros(volumes * depth, 1, height // 16, width // 16)

    def forward(self, image_embeddings, input_points, input_labels, multimask_output=True, **kwargs):
        count = input_points.shape[0]
        size = image_embeddings.shape[-1] * 4
        prompted = (input_labels[:, 0] != -10).any(dim=1)
        logits = torch.where(prompted[:, None, None, None, None], 10.0, -10.0).expand(count, 1, 3, size, size)
        return SimpleNamespace(pred_masks=logits, iou_scores=torch.ones(count, 1, 3))


def overlapping_prompts() -> tuple[list, list]:
    """Prompts whose masks overlap under `BoxFillSam`, for slices of at least 20 x 24 pixels: a liver (value 1,
    named) boxed on slices 2 and 3, and a tumour (value 2, named) on slice 2, inside the liver and out past its
    edge. New lists at each call."""
    from msa_hf.inference.predictor import Prompt

    liver = [
        Prompt(box=[2, 2, 19, 15], slice=2, value=1, name="liver"),
        Prompt(box=[3, 3, 17, 14], slice=3, value=1),
    ]
    return liver, [Prompt(box=[6, 5, 21, 9], slice=2, value=2, name="tumour")]
