"""Self-distillation: the teacher is exactly the base (adapters off, the decoder as it was), and a
distillation step learns the teacher's masks for random prompts, never the dataset's labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import SamConfig, SamModel

from msa_hf import SamAdapterConfig, SamAdapterModel
from msa_hf.data import prepare_dataset
from msa_hf.modeling.adapter_layers import adapters_disabled
from msa_hf.testing import randomize_adapter_weights, randomize_weights, tiny_sam_kwargs
from msa_hf.training.config import TrainConfig
from msa_hf.training.job import run_training
from msa_hf.training.retention import BaseTeacher, distillation_batch, random_prompts


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


def _trained_weights(base, dataset, output, distill: float) -> dict[str, torch.Tensor]:
    config = TrainConfig(
        base=str(base), dataset=str(dataset), output_dir=str(output), steps=3, batch_size=4, eval_every=3,
        checkpoint_every=3, log_with="none", evaluate_test=False, distill_probability=distill, augment=False,
    )  # fmt: skip
    run_training(config)
    return load_file(str(output / "model" / "model.safetensors"))


def test_distillation_learns_the_base_not_the_labels(tiny_base, tmp_path):
    datasets = {}
    for shapes in ("left", "right"):
        _source(tmp_path / f"src-{shapes}", shapes)
        datasets[shapes] = tmp_path / f"data-{shapes}"
        prepare_dataset(tmp_path / f"src-{shapes}", datasets[shapes], split=(0.5, 0.25, 0.25))
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


def test_distillation_is_refused_where_its_teacher_does_not_exist():
    with pytest.raises(ValueError, match="distill_probability=0.5 needs method='msa'"):
        TrainConfig(method="lora", distill_probability=0.5)
    with pytest.raises(ValueError, match="distill_probability"):
        TrainConfig(distill_probability=1.5)
