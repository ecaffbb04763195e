"""The `msa` peft method over a table of configurations, in the style of peft's own method tests.

Every case (depth branch on/off x the three decoder modes x one or two named adapters) goes through the
same checks, each comparing outputs: adapters change SAM's output and `disable_adapter` gives SAM's back
exactly; `save_pretrained` + `PeftModel.from_pretrained` reproduce every adapter; and the native
`SamAdapterModel` converted from each adapter, and converted back to peft, computes the same masks.
"""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel, get_peft_model

from msa_hf import MsaAdapterConfig, peft_model_to_sam_adapter, sam_adapter_to_peft_model
from msa_hf.testing import fresh_sam, randomize_adapter_weights

BOXES = torch.tensor([[[4.0, 6.0, 40.0, 50.0]], [[10.0, 3.0, 60.0, 30.0]], [[0.0, 0.0, 63.0, 63.0]], [[20, 20, 30, 30]]])  # fmt: skip
ADAPTER_NAMES = ("liver", "kidney")

TEST_CASES = [
    (f"depth-{depth}_decoder-{decoder}_adapters-{count}", depth, decoder, count)
    for depth in (False, True)
    for decoder in ("frozen", "adapters", "full")
    for count in (1, 2)
]


def _build(use_depth_branch: bool, decoder_training: str, count: int) -> PeftModel:
    """A peft model with `count` named MSA adapters of random (distinct) weights."""
    config = {"use_depth_branch": use_depth_branch, "decoder_training": decoder_training, "num_slices": 2}
    model = get_peft_model(fresh_sam(), MsaAdapterConfig(**config), adapter_name=ADAPTER_NAMES[0])
    for name in ADAPTER_NAMES[1:count]:
        model.add_adapter(name, MsaAdapterConfig(**config))
    randomize_adapter_weights(model, seed=7)
    if decoder_training == "full":  # each adapter's own copy of the trained decoder parts differs
        with torch.no_grad():
            for name in ADAPTER_NAMES[:count]:
                head = model.get_base_model().mask_decoder.iou_prediction_head.modules_to_save[name]
                head.proj_in.weight.add_(0.3 if name == ADAPTER_NAMES[0] else -0.3)
    return model.eval()


def _masks(model, images: torch.Tensor) -> torch.Tensor:
    """The mask logits and the IoU head's scores, flattened into one vector per image."""
    with torch.no_grad():
        outputs = model(pixel_values=images, input_boxes=BOXES)
    return torch.cat([outputs.pred_masks.flatten(1), outputs.iou_scores.flatten(1)], dim=1)


@pytest.mark.parametrize(("case", "use_depth_branch", "decoder_training", "count"), TEST_CASES, ids=[c[0] for c in TEST_CASES])  # fmt: skip
def test_msa_method_case(tmp_path, images, case, use_depth_branch, decoder_training, count):
    close = {"atol": 1e-5, "rtol": 0.0}
    sam_masks = _masks(fresh_sam(), images)
    model = _build(use_depth_branch, decoder_training, count)
    outputs = {}
    for name in ADAPTER_NAMES[:count]:
        model.set_adapter(name)
        outputs[name] = _masks(model, images)
        assert (outputs[name] - sam_masks).abs().max() > 1e-2, f"{case}: adapter {name} changes nothing"
        with model.disable_adapter():
            torch.testing.assert_close(_masks(model, images), sam_masks, **close)
    if count == 2:
        assert (outputs["liver"] - outputs["kidney"]).abs().max() > 1e-3, f"{case}: the adapters coincide"

    # save and load: every adapter comes back with its own outputs (peft writes a named adapter's files
    # under <folder>/<name>)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(
        fresh_sam(), tmp_path / ADAPTER_NAMES[0], adapter_name=ADAPTER_NAMES[0]
    )
    for name in ADAPTER_NAMES[1:count]:
        loaded.load_adapter(tmp_path / name, adapter_name=name)
    for name in ADAPTER_NAMES[:count]:
        loaded.set_adapter(name)
        torch.testing.assert_close(_masks(loaded.eval(), images), outputs[name], **close)

    # native <-> peft: each adapter as a SamAdapterModel, and back
    for name in ADAPTER_NAMES[:count]:
        native = peft_model_to_sam_adapter(model, name).eval()
        assert native.config.use_depth_branch == use_depth_branch
        assert native.config.decoder_training == decoder_training
        torch.testing.assert_close(_masks(native, images), outputs[name], **close)
        back = sam_adapter_to_peft_model(native, adapter_name=name).eval()
        torch.testing.assert_close(_masks(back, images), outputs[name], **close)
