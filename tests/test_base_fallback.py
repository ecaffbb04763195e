"""The base answers where the adapted model ignores the prompt: the rule on hand-made masks, and a model whose
answers are, prompt by prompt, exactly the adapted model's or exactly the base's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from msa_hf import SamAdapterModel
from msa_hf.modeling.base_fallback import choose_answers, follows_prompt
from msa_hf.testing import tiny_sam_kwargs

SIZE = 64  # the input frame of the hand-made masks: 8 x 8 low-resolution pixels of 8 x 8 input pixels each


def _masks(*pictures: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, P, 1, 8, 8) logits (+1 inside, -1 outside) and scores for P 8 x 8 boolean pictures."""
    logits = torch.tensor(np.stack(pictures), dtype=torch.float32) * 2 - 1
    return logits[None, :, None], torch.ones(1, len(pictures), 1)


def test_an_answer_follows_its_clicks_and_its_box():
    square = np.zeros((8, 8), bool)
    square[2:5, 2:5] = True  # input pixels 16..39
    masks, scores = _masks(square, square, square, square, np.zeros((8, 8), bool))
    points = torch.tensor([[[[20.0, 20.0], [0, 0]], [[50.0, 20.0], [0, 0]], [[50.0, 20.0], [30.0, 30.0]],
                            [[20.0, 20.0], [30.0, 30.0]], [[20.0, 20.0], [0, 0]]]])  # fmt: skip
    labels = torch.tensor([[[1, -10], [1, -10], [1, 1], [1, 0], [1, -10]]])
    follows = follows_prompt(masks, scores, SIZE, points, labels)
    # inside; the only positive click outside; one of two positives inside; a correction (negative click)
    # inside is not judged; an empty answer follows nothing
    assert follows.tolist() == [[True, False, True, True, False]]
    boxes = torch.tensor([[[14.0, 14.0, 42.0, 42.0], [14.0, 14.0, 30.0, 42.0], [14.0, 14.0, 34.0, 42.0],
                           [0.0, 0.0, 63.0, 63.0], [0.0, 0.0, 63.0, 63.0]]])  # fmt: skip
    # all inside; 6 of 9 pixels inside (< 0.9); 6 of 9 again (centres at 20, 28, 36: 36 > 34); around; empty
    assert follows_prompt(masks, scores, SIZE, input_boxes=boxes).tolist() == [
        [True, False, False, True, False]
    ]
    # clicks and a box: both must be followed
    assert follows_prompt(masks, scores, SIZE, points, labels, boxes).tolist() == [
        [True, False, False, True, False]
    ]
    only_negative = torch.tensor([[[0, -10]] * 5])  # no positive click: the box decides
    assert follows_prompt(masks, scores, SIZE, points, only_negative, boxes).tolist() == [
        [True, False, False, True, False]
    ]


def test_the_best_scoring_mask_is_judged_and_answers_are_chosen_per_prompt():
    square, elsewhere = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    square[2:5, 2:5], elsewhere[6:, 6:] = True, True
    logits = (
        torch.tensor(np.stack([square, elsewhere]), dtype=torch.float32)[None, None] * 2 - 1
    )  # (1,1,2,8,8)
    click = torch.tensor([[[[20.0, 20.0]]]])
    assert follows_prompt(logits, torch.tensor([[[0.9, 0.1]]]), SIZE, click).item()
    assert not follows_prompt(logits, torch.tensor([[[0.1, 0.9]]]), SIZE, click).item()
    adapted, base = torch.zeros(2, 3, 5), torch.ones(2, 3, 5)
    chosen = choose_answers(adapted, base, torch.tensor([[True, False, True], [False, False, True]]))
    assert chosen[..., 0].tolist() == [[0, 1, 0], [1, 1, 0]]


def _adapted_alone(model: SamAdapterModel, **inputs):
    model.config.base_fallback = False
    try:
        with torch.no_grad():
            return model(**inputs)
    finally:
        model.config.base_fallback = True


def test_the_model_answers_each_prompt_as_the_adapted_model_or_as_the_base(fallback_pair):
    model, base = fallback_pair
    size = model.config.vision_config.image_size
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    grid = torch.arange(4, size, 8, dtype=torch.float32)
    points = torch.cartesian_prod(grid, grid)[:, None][None]  # (1, P, 1, 2): a click on every 8th pixel
    inputs = dict(
        pixel_values=pixels, input_points=points, input_labels=torch.ones(1, len(points[0]), 1).long()
    )
    adapted = _adapted_alone(model, **inputs)
    with torch.no_grad():
        from_base = base(**inputs)
        answered = model(**inputs)
    follows = follows_prompt(adapted.pred_masks, adapted.iou_scores, size, points, inputs["input_labels"])[0]
    assert 0 < follows.sum() < len(follows)  # both kinds of prompt are in the test
    for index, follow in enumerate(follows.tolist()):
        expected = adapted if follow else from_base
        # float32's own tolerance: the fallback decodes both answers in one batch, and a CPU's matmul kernels
        # may sum a batch of another size in another order (bitwise equal on some CPUs, not all)
        torch.testing.assert_close(answered.pred_masks[0, index], expected.pred_masks[0, index])
        torch.testing.assert_close(answered.iou_scores[0, index], expected.iou_scores[0, index])
    # the interactive path: both embeddings cached, the same answers
    embeddings = model.get_image_embeddings(pixels)
    channels = model.config.vision_config.output_channels
    assert embeddings.shape[1] == 2 * channels
    torch.testing.assert_close(embeddings[:, channels:], base.get_image_embeddings(pixels), atol=0, rtol=0)
    with torch.no_grad():
        cached = model(image_embeddings=embeddings, input_points=points, input_labels=inputs["input_labels"])
    assert torch.equal(cached.pred_masks, answered.pred_masks)
    with pytest.raises(ValueError, match=f"takes image embeddings of {2 * channels} channels"):
        model(image_embeddings=embeddings[:, :channels], input_points=points)


def test_training_trains_the_adapted_model_and_the_base_stays_in_the_saved_model(fallback_pair, tmp_path):
    model, base = fallback_pair
    size = model.config.vision_config.image_size
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    boxes = torch.tensor([[[8.0, 8.0, 60.0, 50.0]]])
    model.train()
    trained = model(pixel_values=pixels, input_boxes=boxes, multimask_output=False)
    model.eval()
    torch.testing.assert_close(
        trained.pred_masks,
        _adapted_alone(model, pixel_values=pixels, input_boxes=boxes, multimask_output=False).pred_masks,
    )
    trained.pred_masks.sum().backward()
    assert all(p.grad is None for p in model.base_mask_decoder.parameters())
    model.save_pretrained(tmp_path / "model")
    saved = load_file(str(tmp_path / "model" / "model.safetensors"))
    for name, weight in base.mask_decoder.state_dict().items():
        assert torch.equal(saved[f"base_mask_decoder.{name}"], weight)
    loaded = SamAdapterModel.from_pretrained(tmp_path / "model").eval()
    assert loaded.config.base_fallback and loaded.falls_back_to_base
    with torch.no_grad():
        again = loaded(pixel_values=pixels, input_boxes=boxes, multimask_output=False)
        first = model(pixel_values=pixels, input_boxes=boxes, multimask_output=False)
    assert torch.equal(again.pred_masks, first.pred_masks)


def test_the_predictor_and_the_onnx_export_know_a_model_that_falls_back(fallback_pair, tmp_path):
    from msa_hf.inference.click_decoder import FallbackClickDecoder, click_decoder_for, supports_click_decoder
    from msa_hf.inference.onnx_export import export_onnx
    from msa_hf.inference.predictor import Prompt, SegmentationPredictor

    model, base = fallback_pair
    # the plain click path would decode the adapted model alone, in whatever mode the model is when asked:
    # the fallback's own click decoder takes it in both
    assert not supports_click_decoder(model) and not supports_click_decoder(model.train())
    assert isinstance(click_decoder_for(model), FallbackClickDecoder)
    model.eval()
    assert isinstance(click_decoder_for(model), FallbackClickDecoder)
    image = np.random.default_rng(0).integers(0, 255, (50, 70)).astype(np.uint8)
    image[10:35, 15:50] = 220
    adapted_alone = copy.deepcopy(model)
    adapted_alone.config.base_fallback = False
    predictors = [SegmentationPredictor(m, device="cpu") for m in (model, base, adapted_alone)]
    for predictor in predictors:
        predictor.set_image(image)
    assert predictors[0]._embedding.shape[1] == 2 * model.config.vision_config.output_channels
    answered_by = []
    for x, y in [(x, y) for x in range(5, 70, 10) for y in range(5, 50, 10)]:
        (mask, _), (from_base, _), (from_adapted, _) = (
            p.predict(Prompt(points=[[x, y]], labels=[1])) for p in predictors
        )
        if (from_base != from_adapted).mean() < 0.05:
            continue  # the two answers (nearly) agree: this click cannot tell which one was given
        # the predictor's answer is one of the two whole (the click decoder of the other two predictors
        # may flip a pixel at the threshold)
        agreement = {"base": (mask == from_base).mean(), "adapted": (mask == from_adapted).mean()}
        chosen = max(agreement, key=agreement.get)
        assert agreement[chosen] > 0.995, agreement
        answered_by.append(chosen)
    assert {"base", "adapted"} <= set(answered_by), answered_by  # both kinds of answer were given
    with pytest.raises(ValueError, match="base_fallback=False"):
        export_onnx(model, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists() or not any((tmp_path / "onnx").iterdir())


def test_a_checkpoint_without_the_bases_decoder_is_refused_with_base_fallback(tiny_base):
    with pytest.raises(ValueError, match="holds no base mask decoder.*keep_base_decoder"):
        SamAdapterModel.from_pretrained(tiny_base, base_fallback=True)
    model, info = SamAdapterModel.from_pretrained(
        tiny_base, output_loading_info=True
    )  # the caller's flag holds
    assert isinstance(model, SamAdapterModel) and not model.config.base_fallback and "missing_keys" in info


def test_a_model_with_the_depth_branch_or_another_method_is_refused():
    from msa_hf import SamAdapterConfig
    from msa_hf.training.config import TrainConfig

    with pytest.raises(ValueError, match="base_fallback is for 2-D models"):
        SamAdapterConfig(**tiny_sam_kwargs(), use_depth_branch=True, base_fallback=True)
    with pytest.raises(ValueError, match="base_fallback needs method='msa'"):
        TrainConfig(dataset="d", base="tiny", method="lora", base_fallback=True)


def test_train_py_keeps_the_bases_decoder_in_the_model_it_saves(tiny_base, disk_dataset, tmp_path):
    from msa_hf.training.config import TrainConfig
    from msa_hf.training.job import run_training

    run_training(TrainConfig(base=str(tiny_base), dataset=str(disk_dataset), output_dir=str(tmp_path / "run"),
                             steps=3, batch_size=4, eval_every=3, checkpoint_every=3, warmup_steps=1,
                             log_with="none", base_fallback=True))  # fmt: skip
    saved = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    base = load_file(str(tiny_base / "model.safetensors"))
    decoder = [name for name in base if name.startswith("mask_decoder.")]
    assert decoder and all(torch.equal(saved[f"base_{name}"], base[name]) for name in decoder)
    assert any(not torch.equal(saved[name], base[name]) for name in decoder)  # the adapted decoder trained
    model = SamAdapterModel.from_pretrained(tmp_path / "run" / "model")
    assert model.eval().falls_back_to_base
    # the adapter-only checkpoint carries the adapted model alone
    assert (tmp_path / "run" / "model" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(
    "prompts",
    [
        {"multimask_output": True},  # one click on a grid of positions: both kinds of answer occur
        {"multimask_output": False, "boxes": True},
        {"multimask_output": False, "negative": True, "mask": True},  # an interactive round
    ],
)
def test_the_fallback_click_decoder_answers_as_the_models_forward(fallback_pair, prompts):
    from msa_hf.inference.click_decoder import ClickDecoder, FallbackClickDecoder

    model, _ = fallback_pair
    size = model.config.vision_config.image_size
    pixels = torch.randn(16, 3, size, size, generator=torch.Generator().manual_seed(5))
    embeddings = model.get_image_embeddings(pixels)
    grid = torch.arange(4, size, 16, dtype=torch.float32)
    points = torch.cartesian_prod(grid, grid)[:, None, None]  # (16, 1, 1, 2): each image clicked elsewhere
    inputs = {"input_points": points, "input_labels": torch.ones(16, 1, 1).long()}
    if prompts.get("boxes"):
        inputs["input_boxes"] = torch.cat([points[:, 0, 0] - 10, points[:, 0, 0] + 10], dim=-1)[:, None]
    if prompts.get("negative"):
        inputs["input_points"] = torch.cat([points, points.flip(0)], dim=2)
        inputs["input_labels"] = torch.tensor([[[1, 0]]]).expand(16, 1, 2)
    if prompts.get("mask"):
        inputs["input_masks"] = torch.randn(16, 1, 4 * 8, 4 * 8, generator=torch.Generator().manual_seed(6))
    decoder = FallbackClickDecoder(model)
    decoder.set_image_embedding(embeddings)
    masks, scores = decoder(**inputs, multimask_output=prompts["multimask_output"])
    with torch.no_grad():
        expected = model(image_embeddings=embeddings, **inputs, multimask_output=prompts["multimask_output"])
    torch.testing.assert_close(masks, expected.pred_masks, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(scores, expected.iou_scores, atol=1e-4, rtol=1e-4)
    if not prompts.get("boxes"):  # clicks: some prompts answered by each model
        adapted = ClickDecoder(model, model.mask_decoder)
        adapted.set_image_embedding(embeddings[:, : embeddings.shape[1] // 2])
        own = adapted(**inputs, multimask_output=prompts["multimask_output"])[0]
        same = (masks == own).flatten(1).all(dim=1)
        assert 0 < same.sum() < len(same)
    with pytest.raises(TypeError, match="FallbackClickDecoder"):
        ClickDecoder(model)
    with pytest.raises(ValueError, match="channels"):
        decoder.set_image_embedding(embeddings[:, :8])
