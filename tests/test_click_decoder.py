"""The fast per-click decoder returns what the model's own forward returns, for every kind of prompt."""

from __future__ import annotations

import pytest
import torch
from transformers import SamConfig, SamModel

from msa_hf import SamAdapterConfig, SamAdapterModel
from msa_hf.inference.click_decoder import ClickDecoder, supports_click_decoder
from msa_hf.testing import randomize_adapter_weights, randomize_weights, tiny_sam_kwargs

PROMPTS = {
    "one click": dict(input_points=torch.tensor([[[[20.0, 30.0]]]]), input_labels=torch.tensor([[[1]]])),
    "clicks": dict(
        input_points=torch.tensor([[[[20.0, 30.0], [50.0, 8.0], [5.0, 60.0]]]]),
        input_labels=torch.tensor([[[1, 0, 1]]]),
    ),
    "box": dict(input_boxes=torch.tensor([[[10.0, 12.0, 40.0, 50.0]]])),
    "box and click": dict(
        input_boxes=torch.tensor([[[10.0, 12.0, 40.0, 50.0]]]),
        input_points=torch.tensor([[[[20.0, 30.0]]]]),
        input_labels=torch.tensor([[[0]]]),
    ),
}


def models():
    sam = SamModel(SamConfig(**tiny_sam_kwargs())).eval()
    randomize_weights(sam, seed=0)
    msa = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs(), decoder_training="adapters")).eval()
    msa.load_state_dict(sam.state_dict(), strict=False)
    randomize_adapter_weights(msa, seed=1)
    return {"SamModel": sam, "SamAdapterModel": msa}


@pytest.mark.parametrize("model_name", ["SamModel", "SamAdapterModel"])
@pytest.mark.parametrize("prompt", list(PROMPTS))
@pytest.mark.parametrize("multimask", [False, True])
def test_click_decoder_equals_the_model(model_name, prompt, multimask):
    model = models()[model_name]
    embedding = model.get_image_embeddings(
        torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    )
    decoder = ClickDecoder(model)
    decoder.set_image_embedding(embedding)
    masks, iou = decoder(**PROMPTS[prompt], multimask_output=multimask)
    with torch.no_grad():
        expected = model(image_embeddings=embedding, multimask_output=multimask, **PROMPTS[prompt])
    assert masks.shape == expected.pred_masks.shape and masks.std() > 1e-3  # not a constant map
    torch.testing.assert_close(masks, expected.pred_masks, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(iou, expected.iou_scores, atol=1e-5, rtol=1e-4)


def test_mask_prompts_and_adapters_matter_and_bad_calls_are_refused():
    sam, msa = models().values()
    embedding = sam.get_image_embeddings(
        torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    )
    decoder = ClickDecoder(sam)
    decoder.set_image_embedding(embedding)
    previous = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 5
    got, _ = decoder(**PROMPTS["one click"], input_masks=previous, multimask_output=False)
    with torch.no_grad():
        expected = sam(
            image_embeddings=embedding, input_masks=previous, multimask_output=False, **PROMPTS["one click"]
        )
    torch.testing.assert_close(got, expected.pred_masks, atol=1e-4, rtol=1e-4)
    without_mask, _ = decoder(**PROMPTS["one click"], multimask_output=False)
    assert (without_mask - got).abs().max() > 1e-3  # the mask prompt changed the cached image side
    adapted = ClickDecoder(msa)
    adapted.set_image_embedding(embedding)
    assert (adapted(**PROMPTS["box"])[0] - decoder(**PROMPTS["box"])[0]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="one prompt set"):
        decoder(input_boxes=torch.zeros(1, 2, 4))
    with pytest.raises(RuntimeError, match="set_image_embedding"):
        ClickDecoder(sam)(**PROMPTS["box"])
    assert not supports_click_decoder(torch.nn.Linear(2, 2))


def test_the_predictor_decodes_clicks_with_it_and_gets_the_stock_answer():
    import numpy as np

    from msa_hf.inference.predictor import Prompt, SegmentationPredictor

    msa = models()["SamAdapterModel"]
    image = np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8)
    fast, stock = SegmentationPredictor(msa), SegmentationPredictor(msa)
    stock._click_decoder = None  # the model's own forward
    assert fast._click_decoder is not None
    for predictor in (fast, stock):
        predictor.set_image(image)
    for prompt, multimask in (
        (Prompt(points=[[30, 20]]), True),
        (Prompt(box=[5, 5, 40, 30], points=[[10, 10]], labels=[0]), False),
    ):
        (got, got_score), (expected, expected_score) = (p.predict(prompt, multimask) for p in (fast, stock))
        assert np.array_equal(got, expected) and abs(got_score - expected_score) < 1e-5


@pytest.mark.parametrize("model_name", ["SamModel", "SamAdapterModel"])
def test_a_batch_of_images_each_with_its_own_prompt(model_name):
    model = models()[model_name]
    embedding = model.get_image_embeddings(
        torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    )
    decoder = ClickDecoder(model)
    decoder.set_image_embedding(embedding)
    points = torch.tensor(
        [[[[20.0, 30.0], [0.0, 0.0]]], [[[50.0, 8.0], [5.0, 60.0]]], [[[40.0, 40.0], [0.0, 0.0]]]]
    )
    labels = torch.tensor([[[1, -10]], [[1, 0]], [[1, -10]]])  # -10: padding, as the processor pads
    previous = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    for prompts in (
        dict(input_points=points, input_labels=labels),
        dict(
            input_boxes=torch.tensor(
                [[[10.0, 12.0, 40.0, 50.0]], [[0.0, 0.0, 63.0, 63.0]], [[30.0, 5.0, 60.0, 20.0]]]
            )
        ),
        dict(input_points=points, input_labels=labels, input_masks=previous),
    ):
        for multimask in (False, True):
            masks, iou = decoder(multimask_output=multimask, **prompts)
            with torch.no_grad():
                expected = model(image_embeddings=embedding, multimask_output=multimask, **prompts)
            torch.testing.assert_close(masks, expected.pred_masks, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(iou, expected.iou_scores, atol=1e-5, rtol=1e-4)
