"""Base pretraining pieces: the geometry, the from-scratch init fixes, metrics, and a resumable run."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from transformers import SamModel

from msa_hf.base_model.pretraining import (
    PretrainingConfig,
    base_config,
    evaluate_prompted_segmentation,
    held_out_set,
    initialise_from_scratch,
    pretrain_base,
    read_stages,
)
from msa_hf.base_model.shipped import pretraining_commands
from msa_hf.evaluation.metrics import box_fill_dice, dice_scores


def test_base_geometry_and_from_scratch_initialisation():
    model = SamModel(base_config())
    count = sum(p.numel() for p in model.parameters())
    assert 0.5e6 <= count <= 4e6
    # transformers' defaults that make from-scratch training fail (docs/base-model.md)
    assert model.shared_image_embedding.positional_embedding.std() > 5
    initialise_from_scratch(model, seed=0)
    qkv = model.vision_encoder.layers[0].attn.qkv.weight
    assert 0.015 < qkv.std() < 0.025
    positional = model.shared_image_embedding.positional_embedding
    assert 0.7 < positional.std() < 1.3
    assert torch.equal(positional, model.prompt_encoder.shared_embedding.positional_embedding)


def test_dice_and_box_fill_by_hand():
    target = torch.zeros(1, 8, 8, dtype=torch.bool)
    target[0, 2:6, 2:4] = True  # 8 pixels
    target[0, 2, 4] = True  # 9 pixels, box 4 x 3 = 12
    assert torch.allclose(box_fill_dice(target), torch.tensor([2 * 9 / (9 + 12)]))
    predicted = torch.zeros_like(target)
    predicted[0, 2:6, 2:4] = True
    assert torch.allclose(dice_scores(predicted, target), torch.tensor([2 * 8 / 17]))
    assert dice_scores(torch.zeros_like(target), torch.zeros_like(target)).item() == 1.0


def test_evaluation_reports_every_prompt_type_and_the_baseline():
    images, masks = held_out_set(6)
    model = initialise_from_scratch(SamModel(base_config()))
    scores = evaluate_prompted_segmentation(model, images, masks, batch_size=3)
    assert set(scores) == {"box", "points1", "points3", "iterative", "box_fill"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert scores["box_fill"] == float(box_fill_dice(masks).mean())


def test_pretraining_runs_checkpoints_and_resumes(tmp_path):
    config = PretrainingConfig(
        total_images=8 * 4, batch_size=8, warmup_steps=1, eval_every=4, checkpoint_every=2, eval_samples=4,
        num_workers=0,
    )  # fmt: skip
    checkpoint = pretrain_base(tmp_path, config, max_minutes=0.0)  # stops after the first step
    assert (
        checkpoint.name == "checkpoint" and json.loads((tmp_path / "progress.json").read_text())["step"] == 1
    )
    final = pretrain_base(tmp_path, config)  # resumes at step 1 and finishes the remaining 3
    assert json.loads((tmp_path / "progress.json").read_text())["step"] == 4
    rows = list(csv.DictReader((tmp_path / "metrics.csv").read_text(encoding="utf-8").splitlines()))
    assert rows[-1]["step"] == "4" and rows[-1]["box_fill"] != ""
    reloaded = SamModel.from_pretrained(final)
    assert reloaded.config.vision_config.image_size == 128


@pytest.mark.slow
def test_a_staged_run_is_recorded_and_replays_to_the_same_weights(tmp_path):
    """A run resumed with a new total (the learning-rate decay moves) lists one command per stage, and
    running those stages in a fresh folder gives the same weights."""
    settings = dict(batch_size=8, warmup_steps=1, eval_every=100, checkpoint_every=100, eval_samples=4,
                    num_workers=0)  # fmt: skip
    first, second = (
        PretrainingConfig(total_images=32, **settings),
        PretrainingConfig(total_images=48, learning_rate=5e-4, **settings),
    )
    original = tmp_path / "original"
    pretrain_base(original, first, stop_at_step=2)
    assert json.loads((original / "progress.json").read_text())["step"] == 2
    pretrain_base(original, second)
    assert [stage["start_step"] for stage in read_stages(original)] == [0, 2]
    # the second stage ran at its own learning rate, not the one saved with the first stage's scheduler
    scheduler_state = torch.load(original / "checkpoint" / "scheduler.bin", weights_only=True)
    assert scheduler_state["base_lrs"] == [5e-4]
    commands = pretraining_commands(original)
    assert commands == [
        "msa-hf pretrain-base --output-dir runs/base --total-images 32 --batch-size 8 --eval-every 100 --num-workers 0 "
        "--stop-at-step 2",
        "msa-hf pretrain-base --output-dir runs/base --total-images 48 --batch-size 8 --learning-rate 0.0005 --eval-every 100 "
        "--num-workers 0",
    ]
    replay = tmp_path / "replay"
    pretrain_base(replay, first, stop_at_step=2)
    pretrain_base(replay, second)
    expected = SamModel.from_pretrained(original / "final").state_dict()
    actual = SamModel.from_pretrained(replay / "final").state_dict()
    assert all(torch.allclose(actual[name], value, atol=1e-6) for name, value in expected.items())
    uninterrupted = tmp_path / "uninterrupted"  # one stage: another schedule and prompt stream
    pretrain_base(uninterrupted, second)
    other = SamModel.from_pretrained(uninterrupted / "final").state_dict()
    assert not all(torch.allclose(other[name], value, atol=1e-6) for name, value in expected.items())


def test_settings_that_cannot_train_are_refused_up_front():
    # total_images 0 exported an untrained base; batch_size 0 ended in a ZeroDivisionError
    for settings, reason in (
        ({"total_images": 0}, "total_images must be >= 1, got 0"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"total_images": 8, "batch_size": 16}, "at least one batch"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"box_probability": 1.5}, r"box_probability must be in \[0, 1\]"),
    ):
        with pytest.raises(ValueError, match=reason):
            PretrainingConfig(**settings)
