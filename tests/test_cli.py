"""`msa-hf convert` and `msa-hf params` end to end."""

from __future__ import annotations

import torch
from original_sam import build_tiny_original_sam

from msa_hf import SamAdapterModel
from msa_hf.cli import main
from msa_hf.modeling.parameter_report import parameter_rows


def test_convert_command_writes_a_loadable_model(tmp_path, capsys):
    sam = build_tiny_original_sam()
    checkpoint = tmp_path / "tiny.pth"
    torch.save(sam.state_dict(), checkpoint)
    assert (
        main(["convert", str(checkpoint), str(tmp_path / "out"), "--depth-branch", "--num-slices", "2"]) == 0
    )
    model = SamAdapterModel.from_pretrained(tmp_path / "out")
    assert model.config.use_depth_branch and model.config.num_slices == 2
    torch.testing.assert_close(
        model.vision_encoder.layers[0].attn.qkv.weight, sam.image_encoder.blocks[0].attn.qkv.weight
    )
    # A second run refuses to overwrite what is already written.
    assert main(["convert", str(checkpoint), str(tmp_path / "out")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_convert_command_reports_bad_checkpoints(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "out")]) == 2
    assert "No checkpoint" in capsys.readouterr().err


def test_parameter_rows_match_the_adapter_arithmetic():
    rows = {(r["geometry"], r["mode"], r["decoder_training"]): r for r in parameter_rows()}
    vit_b = rows[("ViT-B", "2-D", "adapters")]
    # Two adapters per block, 12 blocks, 768 -> 192 -> 768 with biases.
    per_adapter = 768 * 192 + 192 + 192 * 768 + 768
    assert vit_b["by_group"]["encoder adapters"] == 12 * 2 * per_adapter
    depth = rows[("ViT-B", "3-D (depth branch)", "adapters")]
    assert depth["by_group"]["depth adapters"] == 12 * per_adapter
    assert rows[("ViT-H", "2-D", "full")]["trainable"] > rows[("ViT-B", "2-D", "full")]["trainable"]


def test_compare_help_names_the_command_and_its_methods_flag(capsys):
    assert main(["compare", "--help"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("usage: msa-hf compare") and "--methods" in printed and "--steps" in printed
