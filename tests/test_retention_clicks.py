"""The ten-first-clicks replay of the retention goal: clicks rotate as said, its first click reproduces the
evaluation's own scores, and the shares and the table come from the right Dice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.retention_clicks import PROTOCOLS, first_click_at, mean_dice_per_first_click, shares, table


def test_first_click_at_rotates_points_and_labels_together():
    points = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]])  # (1, K=3, 2)
    labels = torch.tensor([[1, 0, 1]])

    def transform(rows):
        return {"input_points": [points, points + 10], "input_labels": [labels, labels]}

    out = first_click_at(transform, 2)(None)
    assert out["input_points"][0][0, :, 0].tolist() == [2.0, 0.0, 1.0]
    assert out["input_points"][1][0, :, 0].tolist() == [12.0, 10.0, 11.0]
    assert out["input_labels"][0].tolist() == [[1, 1, 0]]
    assert first_click_at(transform, 0)(None)["input_points"][0].equal(points)


def test_the_first_click_reproduces_the_evaluations_own_scores(fallback_pair, disk_dataset):
    from msa_hf.evaluation.protocols import evaluate_model

    model, _ = fallback_pair
    each = mean_dice_per_first_click(model, str(disk_dataset), "test", "disk")
    report = evaluate_model(model, disk_dataset, "test", PROTOCOLS, classes="disk", device="cpu")
    for protocol in PROTOCOLS:
        assert len(each[protocol]) == 10
        assert each[protocol][0] == pytest.approx(report["tables"][protocol]["disk"]["dice"], abs=1e-9)
    assert len(set(np.round(each["points1"], 6))) > 1  # other first clicks give other answers


def test_shares_and_table_take_the_interior_click_and_the_mean_of_all_ten():
    dice = {}
    for protocol in PROTOCOLS:
        dice |= {f"base held-out {protocol}": 0.2, f"fallback held-out {protocol}": 0.19,
                 f"base adapted {protocol}": 0.4, f"adapted adapted {protocol}": 0.6,
                 f"fallback adapted {protocol}": 0.55}  # fmt: skip
    assert shares(dice) == pytest.approx(
        {
            "held-out kept points1": 0.95,
            "gain kept points1": 0.75,
            "held-out kept iterative": 0.95,
            "gain kept iterative": 0.75,
        }  # fmt: skip
    )
    # the fallback's adapted Dice: 0.5 from the interior click (half the gain), 0.6 on average over ten
    run = {f"test {key}": [value] * 10 for key, value in dice.items()}
    for protocol in PROTOCOLS:
        run[f"test fallback adapted {protocol}"] = [0.5] + [0.6111111111111112] * 9
    text = table({0: {**run, **{key.replace("test ", "validation "): v for key, v in run.items()}}})
    assert "| test | 0 | interior | 0.95 | 0.95 | 0.50 | 0.50 | no |" in text
    assert "| test | 0 | all ten | 0.95 | 0.95 | 1.00 | 1.00 | yes |" in text
