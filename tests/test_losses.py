"""SAM's loss pieces against hand-computed values."""

from __future__ import annotations

import math

import torch

from msa_hf.training.losses import dice_loss, mask_iou, sam_loss, sigmoid_focal_loss


def test_focal_and_dice_by_hand():
    logits = torch.tensor([[[[0.0, 2.0]]]])  # (B=1, M=1, 1, 2)
    targets = torch.tensor([[[[1.0, 0.0]]]])
    p0, p1 = 0.5, 1 / (1 + math.exp(-2.0))
    focal_0 = 0.25 * (-math.log(p0)) * (1 - p0) ** 2  # positive pixel, p_t = p
    focal_1 = 0.75 * (-math.log(1 - p1)) * p1**2  # negative pixel, p_t = 1 - p
    assert torch.allclose(sigmoid_focal_loss(logits, targets), torch.tensor([[(focal_0 + focal_1) / 2]]))
    dice = 1 - (2 * p0 + 1) / (p0 + p1 + 1 + 1)
    assert torch.allclose(dice_loss(logits, targets), torch.tensor([[dice]]))
    assert torch.equal(
        mask_iou(logits, targets), torch.tensor([[0.0]])
    )  # predicts pixel 1 only, target pixel 0


def test_sam_loss_trains_the_best_of_three_masks():
    targets = torch.zeros(1, 1, 4, 4)
    targets[..., :2, :] = 1
    good = torch.where(targets[0, 0] > 0, 8.0, -8.0)
    logits = torch.stack([-good, good, torch.zeros(4, 4)])[None]  # mask 1 is right
    iou = torch.tensor([[0.0, 1.0, 0.5]])
    loss, parts = sam_loss(logits, iou, targets)
    single, _ = sam_loss(logits[:, 1:2], iou[:, 1:2], targets)
    actual_iou = mask_iou(logits, targets)
    assert torch.allclose(actual_iou, torch.tensor([[0.0, 1.0, 0.0]]))  # logit 0 is not > 0: empty mask
    iou_mse = ((iou - actual_iou) ** 2).mean()
    assert torch.allclose(loss - iou_mse, single - 0.0)  # the best mask's loss, plus the IoU head's error
    assert parts["dice"] < 0.01
