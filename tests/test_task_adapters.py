"""Several task adapters on one base: loaded together, switched by name, each equal to itself alone."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from msa_hf.hub.task_adapters import TaskAdapterError, load_task_adapters, task_adapter_names
from msa_hf.testing import (
    fresh_sam,
    saved_msa_adapter,
)

BOXES = torch.tensor([[[4.0, 6.0, 40.0, 50.0]], [[10.0, 3.0, 60.0, 30.0]]])


def test_adapters_switch_by_name_and_match_each_alone(tmp_path):
    saved_msa_adapter(tmp_path / "liver", seed=1)
    saved_msa_adapter(tmp_path / "kidney", seed=2)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model = load_task_adapters(
        fresh_sam(), {"liver": str(tmp_path / "liver"), "kidney": str(tmp_path / "kidney")}
    )
    assert task_adapter_names(model) == ["liver", "kidney"] and model.active_adapter == "liver"
    outputs = {}
    with torch.no_grad():
        for name in ("liver", "kidney"):
            model.set_adapter(name)
            outputs[name] = model(pixel_values=images, input_boxes=BOXES).pred_masks
            alone = PeftModel.from_pretrained(fresh_sam(), tmp_path / name).eval()
            torch.testing.assert_close(
                outputs[name], alone(pixel_values=images, input_boxes=BOXES).pred_masks
            )
    assert (outputs["liver"] - outputs["kidney"]).abs().max() > 1e-2
    assert task_adapter_names(fresh_sam()) == []


def test_mixed_methods_misfits_and_empty_lists_are_refused(tmp_path):
    saved_msa_adapter(tmp_path / "msa", seed=1)
    lora = get_peft_model(fresh_sam(), LoraConfig(target_modules=["qkv"], r=2))
    lora.save_pretrained(tmp_path / "lora")
    with pytest.raises(TaskAdapterError, match="different PEFT methods"):
        load_task_adapters(fresh_sam(), {"a": str(tmp_path / "msa"), "b": str(tmp_path / "lora")})
    saved_msa_adapter(tmp_path / "wide", seed=3, hidden_size=48, mlp_dim=96)
    with pytest.raises(TaskAdapterError, match="same base"):
        load_task_adapters(fresh_sam(), {"a": str(tmp_path / "msa"), "wide": str(tmp_path / "wide")})
    with pytest.raises(TaskAdapterError, match="at least one"):
        load_task_adapters(fresh_sam(), {})
    # a missing folder, or a folder that is no adapter, named with the adapter it was given for
    with pytest.raises(TaskAdapterError, match=r"task adapter 'gone': .*gone: no such folder"):
        load_task_adapters(fresh_sam(), {"a": str(tmp_path / "msa"), "gone": str(tmp_path / "gone")})
    fresh_sam().save_pretrained(tmp_path / "model")
    with pytest.raises(TaskAdapterError, match=r"task adapter 'model': .*model has no adapter_config.json"):
        load_task_adapters(fresh_sam(), {"model": str(tmp_path / "model")})
