"""--device / --dtype: the same code path on every device; a bf16 encoder agrees with float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_hf.inference.placement import resolve_placement
from msa_hf.inference.predictor import Prompt, SegmentationPredictor
from msa_hf.testing import randomize_weights


def test_defaults_and_bad_values():
    placement = resolve_placement()
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert placement.device.type == expected
    assert placement.dtype == (torch.bfloat16 if expected == "cuda" else torch.float32)
    assert resolve_placement("cpu", "bf16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype 'int8'"):
        resolve_placement("cpu", "int8")
    with pytest.raises(ValueError, match="float16 on the CPU"):
        resolve_placement("cpu", "float16")
    with pytest.raises(ValueError, match="device 'gpu0'"):
        resolve_placement("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU; use --device cpu"):
            resolve_placement("cuda")


def test_a_bfloat16_encoder_gives_the_float32_masks_within_its_tolerance(tiny_base):
    from msa_hf import SamAdapterModel

    model = SamAdapterModel.from_pretrained(tiny_base)
    randomize_weights(model, seed=4, std=0.05)
    image = np.random.default_rng(0).integers(0, 255, (50, 60)).astype(np.uint8)
    image[10:30, 15:40] = 220
    prompts = [Prompt(box=[15, 10, 39, 29]), Prompt(points=[[25, 20]], labels=[1])]
    results = {}
    for dtype in ("float32", "bfloat16"):
        predictor = SegmentationPredictor(model, device="cpu", dtype=dtype)
        predictor.set_image(image)
        results[dtype] = (predictor._embedding.clone(), [predictor.predict(p) for p in prompts])
    (reference, exact), (embedding, approximate) = results["float32"], results["bfloat16"]
    assert embedding.dtype == torch.float32  # the decoder runs in float32 on every device
    assert not torch.equal(embedding, reference)  # autocast really ran
    torch.testing.assert_close(embedding, reference, atol=0.05, rtol=0.05)
    for (mask, score), (mask16, score16) in zip(exact, approximate, strict=True):
        assert mask.shape == mask16.shape == (50, 60)
        assert (mask == mask16).mean() > 0.98
        assert abs(score - score16) < 0.05


def test_evaluation_in_bfloat16_matches_float32_to_bf16_tolerance(tiny_base, disk_dataset):
    from msa_hf import SamAdapterModel
    from msa_hf.evaluation.protocols import evaluate_model

    model = SamAdapterModel.from_pretrained(tiny_base)
    tables = {
        dtype: evaluate_model(model, disk_dataset, "test", ("box", "points1"), device="cpu", dtype=dtype,
                              batch_size=3)["tables"]
        for dtype in ("float32", "bfloat16")
    }  # fmt: skip
    for protocol, table in tables["float32"].items():
        for name, row in table.items():
            assert abs(row["dice"] - tables["bfloat16"][protocol][name]["dice"]) < 0.03
