"""Retention options. Self-distillation: the teacher is exactly the base (adapters off, the decoder as it
was), and a distillation step learns the teacher's masks for random prompts, never the dataset's labels.
Replay: the replaced rows are the data engine's pictures with their exact masks and prompts on them, every
other row and key is untouched, and a batch made wholly of replay learns nothing from the dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import SamConfig, SamModel

from msa_hf import SamAdapterConfig, SamAdapterModel
from msa_hf.base_model.data_engine import SyntheticSegmentationDataset
from msa_hf.base_model.held_out import pixel_values_from_uint8, samples_at_size
from msa_hf.data import prepare_dataset
from msa_hf.modeling.adapter_layers import adapters_disabled
from msa_hf.testing import randomize_adapter_weights, randomize_weights, tiny_sam_kwargs
from msa_hf.training.config import TrainConfig
from msa_hf.training.job import run_training
from msa_hf.training.retention import (
    BaseTeacher,
    ReplayDraws,
    ReplayFeed,
    SyntheticReplay,
    distillation_batch,
    mix_replayed_rows,
    random_prompts,
)
from msa_hf.training.retention.replay import REPLAY_SEED_OFFSET, replayed_row_count


def _base_and_adapted() -> tuple[SamModel, SamAdapterModel]:
    base = SamModel(SamConfig(**tiny_sam_kwargs())).eval()
    randomize_weights(base, seed=0, std=0.1)
    adapted = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs())).eval()
    adapted.load_state_dict(base.state_dict(), strict=False)
    return base, adapted


def _outputs(model, pixels, boxes) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=pixels, input_boxes=boxes, multimask_output=False).pred_masks


PIXELS = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
BOXES = torch.tensor([[[4.0, 6.0, 40.0, 50.0]], [[10.0, 12.0, 60.0, 30.0]]])


def test_with_adapters_disabled_the_model_computes_what_its_base_computes():
    base, adapted = _base_and_adapted()
    randomize_adapter_weights(adapted, seed=1)
    trained_outputs = _outputs(adapted, PIXELS, BOXES)
    assert not torch.allclose(trained_outputs, _outputs(base, PIXELS, BOXES), atol=1e-3)
    with adapters_disabled(adapted):
        torch.testing.assert_close(_outputs(adapted, PIXELS, BOXES), _outputs(base, PIXELS, BOXES))
    torch.testing.assert_close(_outputs(adapted, PIXELS, BOXES), trained_outputs)  # on again afterwards


def test_the_teacher_stays_the_base_while_adapters_and_a_fully_trained_decoder_move():
    base, adapted = _base_and_adapted()
    adapted.mark_only_adapters_as_trainable()  # the paper's default: the decoder trains in full
    teacher = BaseTeacher(adapted)
    assert teacher.decoder is not None and not any(p.requires_grad for p in teacher.decoder.parameters())
    randomize_adapter_weights(adapted, seed=1)  # as training moves them
    with torch.no_grad():
        for parameter in adapted.mask_decoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    trained_decoder = adapted.mask_decoder
    torch.testing.assert_close(teacher(PIXELS, input_boxes=BOXES), _outputs(base, PIXELS, BOXES))
    assert adapted.mask_decoder is trained_decoder  # the trained decoder is back in place
    # a frozen decoder needs no copy: adapters off is the base
    frozen = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs(), decoder_training="frozen"))
    assert BaseTeacher(frozen.mark_only_adapters_as_trainable()).decoder is None


def _scored_by_mask_mean(model) -> None:
    """Replace `model`'s IoU scores by each mask's mean logit (a random tiny IoU head ranks every click alike),
    so that which of the three masks is best depends on the click."""
    forward = model.forward

    def scored(*args, **kwargs):
        outputs = forward(*args, **kwargs)
        outputs.iou_scores = outputs.pred_masks.mean(dim=(-2, -1))
        return outputs

    model.forward = scored


def test_the_teacher_answers_a_click_with_the_best_of_the_bases_three_masks():
    base, adapted = _base_and_adapted()
    _scored_by_mask_mean(adapted)
    teacher = BaseTeacher(adapted.mark_only_adapters_as_trainable())
    points = torch.rand(2, 6, 1, 2, generator=torch.Generator().manual_seed(8)) * 63
    clicks = {"input_points": points, "input_labels": torch.ones(2, 6, 1, dtype=torch.long)}
    answered = teacher(PIXELS, multimask=True, **clicks)  # (B, P, 1, h, w): six clicks per picture
    with torch.no_grad():
        outputs = base(pixel_values=PIXELS, multimask_output=True, **clicks)
    best = outputs.pred_masks.mean(dim=(-2, -1)).argmax(-1)
    assert answered.shape == (2, 6, 1, *outputs.pred_masks.shape[-2:]) and best.unique().numel() > 1
    for row in range(2):
        for prompt in range(6):
            torch.testing.assert_close(
                answered[row, prompt, 0], outputs.pred_masks[row, prompt, best[row, prompt]]
            )
    single = teacher(PIXELS, **clicks)  # the single-mask output otherwise
    with torch.no_grad():
        torch.testing.assert_close(
            single, base(pixel_values=PIXELS, multimask_output=False, **clicks).pred_masks
        )


def test_random_prompts_lie_anywhere_in_the_frame_and_repeat_with_the_seed():
    boxes = random_prompts(np.random.default_rng(0), 200, 64, True, torch.device("cpu"))["input_boxes"][:, 0]
    assert (
        (boxes[:, 0] >= 0).all()
        and (boxes[:, 2] <= 63).all()
        and (boxes[:, 2] - boxes[:, 0] >= 6.4 - 1e-4).all()
    )
    assert boxes[:, 0].min() < 10 and boxes[:, 2].max() > 54  # spread over the frame, not around targets
    again = random_prompts(np.random.default_rng(0), 200, 64, True, torch.device("cpu"))["input_boxes"][:, 0]
    assert torch.equal(boxes, again)
    clicks = random_prompts(np.random.default_rng(1), 5, 64, False, torch.device("cpu"))
    assert clicks["input_points"].shape == (5, 1, 1, 2) and clicks["input_labels"].eq(1).all()


def test_a_distillation_batch_is_labelled_by_the_teacher_alone():
    base, adapted = _base_and_adapted()
    teacher = BaseTeacher(adapted.mark_only_adapters_as_trainable())
    batch = {"pixel_values": PIXELS, "labels": torch.ones(2, 1, 64, 64), "input_boxes": BOXES}
    distilled = distillation_batch(teacher, batch, np.random.default_rng(0), use_box=True)
    expected = torch.nn.functional.interpolate(
        _outputs(base, PIXELS, distilled["input_boxes"])[:, 0], size=(64, 64), mode="bilinear"
    )
    assert torch.equal(distilled["labels"], (expected > 0).float())
    assert not torch.equal(distilled["input_boxes"], BOXES)


@pytest.mark.parametrize("use_box", [True, False])
def test_distillation_outside_labels_keeps_the_candidate_that_overlaps_them_least(use_box):
    from msa_hf.training.retention.self_distillation import CANDIDATES

    base, adapted = _base_and_adapted()
    teacher = BaseTeacher(adapted.mark_only_adapters_as_trainable())
    structures = torch.zeros(2, 1, 64, 64, dtype=torch.bool)
    structures[0, 0, 10:40, 5:50] = True  # a large adapted structure on the first picture
    structures[1, 0, 30:60, 30:60] = True
    batch = {
        "pixel_values": PIXELS,
        "labels": torch.ones(2, 1, 64, 64),
        "input_boxes": BOXES,
        "adapted": structures,
    }
    distilled = distillation_batch(teacher, batch, np.random.default_rng(5), use_box=use_box)
    # the same candidates, drawn again, and the base's masks for each
    candidates = random_prompts(np.random.default_rng(5), 2, 64, use_box, torch.device("cpu"), CANDIDATES)
    with torch.no_grad():  # a box: the single mask; a click: the best of three by the base's IoU head
        outputs = base(pixel_values=PIXELS, multimask_output=not use_box, **candidates)
    best = outputs.iou_scores.argmax(-1)[..., None, None, None].expand(
        -1, -1, 1, *outputs.pred_masks.shape[-2:]
    )
    masks = torch.gather(outputs.pred_masks, 2, best)[:, :, 0]
    masks = torch.nn.functional.interpolate(masks, size=(64, 64), mode="bilinear") > 0  # (2, K, 64, 64)
    overlap = (masks & structures).flatten(2).sum(-1) / masks.flatten(2).sum(-1).clamp(min=1)
    key = "input_boxes" if use_box else "input_points"
    for row in range(2):
        chosen = next(
            k for k in range(CANDIDATES) if torch.equal(candidates[key][row, k], distilled[key][row, 0])
        )
        assert torch.equal(distilled["labels"][row, 0].bool(), masks[row, chosen])  # the base's own mask
        if use_box:
            assert overlap[row, chosen] == overlap[row].min()
        else:  # a click on the structure is never kept while another candidate lies off it
            x, y = distilled["input_points"][row, 0, 0].round().long().tolist()
            assert not structures[row, 0, y, x]
            off = [
                k
                for k in range(CANDIDATES)
                if not structures[row, 0, *candidates[key][row, k, 0].round().long().flip(0)]
            ]
            assert overlap[row, chosen] == overlap[row, off].min()
    if use_box:  # the choice mattered on this batch
        assert overlap.min(dim=1).values.sum() < overlap[:, 0].sum()
    else:  # some candidates were clicks on the structures, and none of those was kept
        points = candidates["input_points"][:, :, 0].round().long()
        hits = [bool(structures[row, 0, y, x]) for row in range(2) for x, y in points[row].tolist()]
        assert any(hits) and not all(hits)


def test_distill_outside_labels_needs_distillation():
    with pytest.raises(ValueError, match="distill_probability"):
        TrainConfig(distill_outside_labels=True)


def _source(folder, shapes: str) -> None:
    """Six PNG cases: the same images, each with a class-1 and a class-2 structure drawn as `shapes`."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(6):
        image = rng.integers(0, 120, (48, 48)).astype(np.uint8)
        label = np.zeros((48, 48), np.uint8)
        if shapes == "left":
            label[5:20, 4:18], label[28:40, 6:16] = 1, 2
        else:
            label[8:26, 26:44], label[30:44, 30:46] = 1, 2
        Image.fromarray(image).save(folder / f"case{index}.png")
        Image.fromarray(label).save(folder / f"case{index}_mask.png")
    (folder / "labels.txt").write_text("1 one\n2 two\n")


def _trained_weights(base, dataset, output, distill: float = 0.0, **options) -> dict[str, torch.Tensor]:
    config = TrainConfig(
        base=str(base), dataset=str(dataset), output_dir=str(output), steps=3, batch_size=4, eval_every=3,
        checkpoint_every=3, log_with="none", evaluate_test=False, distill_probability=distill, augment=False,
        **options,
    )  # fmt: skip
    run_training(config)
    return load_file(str(output / "model" / "model.safetensors"))


def _left_and_right_datasets(root) -> dict[str, object]:
    datasets = {}
    for shapes in ("left", "right"):
        _source(root / f"src-{shapes}", shapes)
        datasets[shapes] = root / f"data-{shapes}"
        prepare_dataset(root / f"src-{shapes}", datasets[shapes], split=(0.5, 0.25, 0.25))
    return datasets


def test_distillation_learns_the_base_not_the_labels(tiny_base, tmp_path):
    datasets = _left_and_right_datasets(tmp_path)
    # every step distilled: the labels (left or right structures) make no difference to the weights
    left = _trained_weights(tiny_base, datasets["left"], tmp_path / "left", distill=1.0)
    right = _trained_weights(tiny_base, datasets["right"], tmp_path / "right", distill=1.0)
    for name, value in left.items():
        assert torch.equal(value, right[name]), name
    # without distillation the labels are what is learnt
    plain = _trained_weights(tiny_base, datasets["left"], tmp_path / "plain", distill=0.0)
    plain_right = _trained_weights(tiny_base, datasets["right"], tmp_path / "plain-right", distill=0.0)
    assert any(not torch.equal(value, plain_right[name]) for name, value in plain.items())
    assert any(not torch.equal(value, left[name]) for name, value in plain.items())


def test_distillation_outside_labels_takes_only_where_the_structures_are_from_the_labels(tiny_base, tmp_path):
    datasets = _left_and_right_datasets(tmp_path)
    # every step distilled, prompts kept off the structures: the labels now steer where the prompts go (the
    # structures sit left or right), so the weights differ; each run is still the teacher's masks alone
    left = _trained_weights(tiny_base, datasets["left"], tmp_path / "left", 1.0, distill_outside_labels=True)
    right = _trained_weights(
        tiny_base, datasets["right"], tmp_path / "right", 1.0, distill_outside_labels=True
    )
    assert any(not torch.equal(value, right[name]) for name, value in left.items())
    again = _trained_weights(
        tiny_base, datasets["left"], tmp_path / "again", 1.0, distill_outside_labels=True
    )
    for name, value in left.items():  # and a function of the seed and the data
        assert torch.equal(value, again[name]), name


def test_distillation_is_refused_where_its_teacher_does_not_exist():
    with pytest.raises(ValueError, match="distill_probability=0.5 needs method='msa'"):
        TrainConfig(method="lora", distill_probability=0.5)
    with pytest.raises(ValueError, match="distill_probability"):
        TrainConfig(distill_probability=1.5)


def _training_batch(size: int = 64, rows: int = 4) -> dict[str, object]:
    generator = torch.Generator().manual_seed(5)
    return {
        "pixel_values": torch.randn(rows, 3, size, size, generator=generator),
        "labels": (torch.rand(rows, 1, size, size, generator=generator) > 0.5).float(),
        "input_boxes": torch.rand(rows, 1, 4, generator=generator) * size,
        "input_points": torch.rand(rows, 1, 2, 2, generator=generator) * size,
        "input_labels": torch.ones(rows, 1, 2, dtype=torch.long),
        "has_target": torch.tensor([True, False, True, True]),
        "class_name": ["one", "two", "one", "two"],
    }


@pytest.mark.parametrize(("rows", "share", "expected"), [(8, 0.0, 0), (8, 0.25, 2), (8, 0.01, 1), (8, 0.99, 7),
                                                          (8, 1.0, 8), (1, 0.5, 1), (4, 0.5, 2)])  # fmt: skip
def test_the_replayed_row_count_rounds_and_keeps_both_kinds_of_rows(rows, share, expected):
    assert replayed_row_count(rows, share) == expected


def test_samples_at_size_resizes_pictures_and_keeps_masks_binary():
    dataset = SyntheticSegmentationDataset(2, seed=3)
    images = torch.from_numpy(np.stack([dataset[i]["image"] for i in range(2)]))
    masks = torch.from_numpy(np.stack([dataset[i]["mask"] for i in range(2)]))
    same = samples_at_size(images, masks, images.shape[1])
    assert same[0] is images and same[1] is masks
    small_images, small_masks = samples_at_size(images, masks, 64)
    assert small_images.dtype == torch.uint8 and small_masks.dtype == torch.bool
    torch.testing.assert_close(small_masks, masks[:, ::2, ::2])  # nearest at half the side: every other pixel
    mean_colour = images.float().mean(dim=(1, 2))
    torch.testing.assert_close(small_images.float().mean(dim=(1, 2)), mean_colour, atol=2.0, rtol=0)


def test_replay_replaces_its_share_of_rows_with_engine_pictures_and_nothing_else():
    batch = _training_batch()
    before = {
        key: value.clone() if isinstance(value, torch.Tensor) else list(value) for key, value in batch.items()
    }
    draws = ReplayDraws(
        SyntheticReplay(64, seed=2), replayed_row_count(len(batch["pixel_values"]), 0.5), 2, 0
    )
    mixed = mix_replayed_rows(batch, draws[3])
    for key, value in batch.items():  # the caller's batch is not modified
        assert torch.equal(value, before[key]) if isinstance(value, torch.Tensor) else value == before[key]
    for key in ("pixel_values", "labels", "input_boxes", "input_points", "input_labels"):
        assert mixed[key].shape == batch[key].shape and mixed[key].dtype == batch[key].dtype
        assert torch.equal(mixed[key][2:], batch[key][2:]), key  # the dataset's rows stay as they were
        if key != "input_labels":  # positive clicks on both kinds of rows
            assert not torch.equal(mixed[key][:2], batch[key][:2]), key
    assert (mixed["input_labels"] == 1).all()
    assert mixed["class_name"] == batch["class_name"]
    assert mixed["has_target"].tolist() == [True, True, True, True]
    # the replayed rows are pictures 6 and 7 of the replay stream (draw 3, two rows a draw), exact masks
    stream = SyntheticSegmentationDataset(10, seed=2 + REPLAY_SEED_OFFSET)
    images = torch.from_numpy(np.stack([stream[i]["image"] for i in (6, 7)]))
    masks = torch.from_numpy(np.stack([stream[i]["mask"] for i in (6, 7)]))
    images, masks = samples_at_size(images, masks, 64)
    torch.testing.assert_close(mixed["pixel_values"][:2], pixel_values_from_uint8(images))
    assert torch.equal(mixed["labels"][:2, 0], masks.float())
    for row in range(2):  # prompts on the replayed target: clicks inside it, the box around it
        for x, y in mixed["input_points"][row, 0]:
            assert masks[row, int(y), int(x)]
        ys, xs = torch.nonzero(masks[row], as_tuple=True)
        x0, y0, x1, y1 = mixed["input_boxes"][row, 0].tolist()
        tight = (xs.min().item(), ys.min().item(), xs.max().item(), ys.max().item())
        side = max(tight[2] - tight[0], tight[3] - tight[1]) + 1
        assert max(abs(a - b) for a, b in zip((x0, y0, x1, y1), tight, strict=True)) <= 0.5 * side
    again = mix_replayed_rows(batch, draws[3])
    for key in ("pixel_values", "input_points", "input_boxes"):  # a function of the draw, prompts included
        assert torch.equal(again[key], mixed[key]), key
    other = mix_replayed_rows(batch, draws[4])
    assert not torch.equal(other["labels"][:2], mixed["labels"][:2])
    # the adapted structures of a replaced row are cleared (the engine's picture has none), the others kept
    batch["adapted"] = torch.ones(4, 1, 64, 64, dtype=torch.bool)
    mixed = mix_replayed_rows(batch, draws[3])
    assert not mixed["adapted"][:2].any() and mixed["adapted"][2:].all() and batch["adapted"].all()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_replay_feed_gives_each_micro_batch_the_rows_of_its_draw(workers):
    """Drawn ahead in workers or here, in order or after a jump (a resumed run), for the second of two
    processes: micro-batch m of process 1 takes draw 2m + 1, pictures 2d and 2d + 1 of the stream, prompted
    from a generator of (seed, draw) of their own."""
    batch, replay = _training_batch(), SyntheticReplay(64, seed=2)
    feed = ReplayFeed(ReplayDraws(replay, 2, 2, seed=5), processes=2, process_index=1, num_workers=workers)
    for micro in (0, 1, 2, 6, 7, 3):
        draw = 2 * micro + 1
        expected = mix_replayed_rows(batch, replay.rows(2 * draw, 2, 2, np.random.default_rng([5, draw, 1])))
        mixed = mix_replayed_rows(batch, feed.rows_for(micro))
        for key in ("pixel_values", "labels", "input_boxes", "input_points", "input_labels"):
            assert torch.equal(mixed[key], expected[key]), (micro, key)
    with pytest.raises(ValueError, match="2 pictures and 3 clicks do not fit a batch of 4 rows and 2 clicks"):
        mix_replayed_rows(batch, ReplayDraws(replay, 2, 3, seed=5)[0])
    with pytest.raises(ValueError, match="replay takes 2-D batches"):  # a depth-branch window
        mix_replayed_rows({**batch, "pixel_values": torch.zeros(1, 4, 3, 64, 64)}, feed.rows_for(0))


def test_replay_of_whole_batches_learns_nothing_from_the_dataset(tiny_base, tmp_path):
    datasets = _left_and_right_datasets(tmp_path)
    left = _trained_weights(tiny_base, datasets["left"], tmp_path / "left", replay_share=1.0)
    right = _trained_weights(tiny_base, datasets["right"], tmp_path / "right", replay_share=1.0)
    for name, value in left.items():
        assert torch.equal(value, right[name]), name
    plain = _trained_weights(tiny_base, datasets["left"], tmp_path / "plain")
    assert any(
        not torch.equal(value, left[name]) for name, value in plain.items()
    )  # replay did change the run
    mixed = _trained_weights(tiny_base, datasets["left"], tmp_path / "mixed", replay_share=0.5)
    # drawn ahead in two workers, the replayed rows (and so the weights) are those drawn in the step's process
    in_workers = _trained_weights(
        tiny_base, datasets["left"], tmp_path / "workers", replay_share=0.5, num_workers=2
    )
    assert all(torch.equal(value, in_workers[name]) for name, value in mixed.items())
    mixed_right = _trained_weights(tiny_base, datasets["right"], tmp_path / "mixed-right", replay_share=0.5)
    assert any(
        not torch.equal(value, mixed_right[name]) for name, value in mixed.items()
    )  # half still learns


def test_replay_is_refused_where_its_pictures_do_not_fit():
    with pytest.raises(ValueError, match="replay_share=0.5 needs 2-D training"):
        TrainConfig(replay_share=0.5, use_depth_branch=True)
    with pytest.raises(ValueError, match="replay_share"):
        TrainConfig(replay_share=-0.1)
    TrainConfig(method="lora", replay_share=0.25)  # any method: the pictures are ordinary training rows
