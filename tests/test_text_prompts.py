"""Text prompts: CLIP features become decoder prompt tokens; after a short training on the embedded MRI
tissue classes, different texts give different masks; CLIP stays frozen."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_hf import SamAdapterConfig, SamAdapterModel
from msa_hf.modeling.text_prompts import CharacterTokenizer, TextEncoder, describe
from msa_hf.testing import text_model, tiny_sam_kwargs, tiny_text_encoder
from msa_hf.training.text_training import TextTrainingConfig, text_prompted_mask, train_text_prompts


def test_text_tokens_reach_the_decoder_with_gradients():
    model, encoder = text_model(), tiny_text_encoder()
    features = encoder(["grey matter", "white matter"])
    assert features.shape == (2, 32) and not features.requires_grad
    assert (features[0] - features[1]).abs().max() > 1e-3
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = model(pixel_values=pixels, text_embeddings=features, multimask_output=False)
    assert out.pred_masks.shape == (2, 1, 1, 32, 32)
    swapped = model(pixel_values=pixels, text_embeddings=features.flip(0), multimask_output=False)
    assert (out.pred_masks - swapped.pred_masks).abs().max() > 1e-4  # the text changes the mask
    out.pred_masks.mean().backward()
    assert model.text_projection.fc1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.model.parameters())  # CLIP is frozen
    with_box = model(
        pixel_values=pixels, text_embeddings=features, input_boxes=torch.tensor([[[5.0, 5, 40, 40]]] * 2)
    )
    assert with_box.pred_masks.shape == (2, 1, 3, 32, 32)
    plain = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs()))
    with pytest.raises(ValueError, match="text_embedding_dim"):
        plain(pixel_values=pixels, text_embeddings=features)


def test_descriptions_fill_the_templates_and_name_unions():
    texts = describe(["grey_matter"], "MR", user={"grey_matter": ["cortex"]})
    assert "grey matter" in texts and "a MRI image of the grey matter" in texts and texts[-1] == "cortex"
    assert describe(["csf", "grey_matter", "white_matter"])[0] == "csf, grey matter and white matter"


@pytest.mark.slow
def test_different_texts_give_different_masks_after_training_on_mri_tissue(tmp_path):
    from msa_hf.data import ensure_default_dataset, load_prepared, read_class_names
    from msa_hf.evaluation.metrics.segmentation import dice

    folder = ensure_default_dataset(tmp_path / "mni")
    dataset = load_prepared(folder)
    names = read_class_names(folder)
    model, encoder = text_model(), tiny_text_encoder()
    clip_before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    # one description per class: a random tiny CLIP has no semantics to tie the templates of a class together
    config = TextTrainingConfig(
        steps=300, batch_size=8, learning_rate=3e-3, union_probability=0.0, templates=("{name}",)
    )
    losses = train_text_prompts(model, encoder, dataset["train"], names, config)
    assert np.mean(losses[-10:]) < 0.85 * np.mean(losses[:10])
    assert all(torch.equal(v, clip_before[k]) for k, v in encoder.model.state_dict().items())
    by_name = {v: k for k, v in names.items()}
    texts = {"csf": "csf", "grey_matter": "grey matter", "white_matter": "white matter"}
    overlap, specificity = [], []
    for row in list(dataset["test"]) + list(dataset["validation"]):
        image, label = np.asarray(row["image"]), np.asarray(row["label"])
        masks = {name: text_prompted_mask(model, encoder, image, text, "MR") for name, text in texts.items()}
        overlap += [
            dice(masks[a], masks[b]) or 0.0
            for a, b in (("csf", "grey_matter"), ("grey_matter", "white_matter"))
        ]
        truth = label == by_name["grey_matter"]
        if truth.sum() >= 200:
            specificity.append(dice(masks["grey_matter"], truth) - dice(masks["white_matter"], truth))
    # the texts ask for different masks, and "grey matter" finds grey matter better than "white matter" does.
    # (A random tiny CLIP gives "grey matter" and "white matter" features of cosine 0.9, so 300 steps separate
    # the white matter only partly; a real CLIP separates the names themselves.)
    assert np.mean(overlap) < 0.7 and np.mean(specificity) > 0.1, (np.mean(overlap), np.mean(specificity))


def test_predict_with_text_loads_the_models_text_encoder(tmp_path, capsys):
    from PIL import Image

    from msa_hf.cli import main

    encoder = tiny_text_encoder()
    encoder.save_pretrained(tmp_path / "clip")
    model = text_model()
    model.config.text_encoder_name = str(tmp_path / "clip")
    model.save_pretrained(tmp_path / "model")
    image = np.random.default_rng(0).integers(0, 255, (50, 60), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "slice.png")
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "slice.png"), str(tmp_path / "mask.png"),
                 "--text", "grey matter"]) == 0  # fmt: skip
    written = np.asarray(Image.open(tmp_path / "mask.png")) == 1
    reloaded = TextEncoder.from_pretrained(tmp_path / "clip")
    expected = text_prompted_mask(
        SamAdapterModel.from_pretrained(tmp_path / "model"), reloaded, image, "grey matter"
    )
    assert written.shape == (50, 60) and np.array_equal(written, expected)
    plain = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs()))
    plain.save_pretrained(tmp_path / "plain")
    assert main(["predict", str(tmp_path / "plain"), str(tmp_path / "slice.png"), str(tmp_path / "m.png"),
                 "--text", "grey matter"]) == 2  # fmt: skip
    assert "takes no text prompts" in capsys.readouterr().err


def test_a_text_naming_two_structures_is_supervised_with_their_union():
    from msa_hf.training.text_training import sample_text_example

    label = np.zeros((64, 64), np.uint8)
    label[5:20, 5:20], label[30:50, 30:50], label[55:60, 55:60] = 1, 2, 3
    example = (np.full((64, 64), 100, np.uint8), label, "MR", [1, 2, 3])
    names = {1: "csf", 2: "grey_matter", 3: "white_matter"}
    config = TextTrainingConfig(union_probability=1.0, templates=("{name}",))
    pixels, target, text = sample_text_example(example, names, np.random.default_rng(0), config, 64)
    named = [v for v, n in names.items() if n.replace("_", " ") in text]
    assert len(named) == 2 and " and " in text and pixels.shape == (3, 64, 64)
    assert torch.equal(target[0].bool(), torch.from_numpy(np.isin(label, named)))


def test_clip_trains_only_when_asked():
    model = tiny_text_encoder().model
    frozen = TextEncoder(model, CharacterTokenizer(300, max_length=64))
    assert not frozen(["csf"]).requires_grad
    trainable = TextEncoder(model, CharacterTokenizer(300, max_length=64), trainable=True)
    assert trainable(["csf"]).requires_grad and all(p.requires_grad for p in model.parameters())
    assert trainable.cached(["csf", "csf"]).requires_grad  # a trainable encoder's features are never cached
    assert not frozen.cached(["csf", "csf"]).requires_grad
