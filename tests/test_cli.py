"""`msa-hf convert` and `msa-hf params` end to end."""

from __future__ import annotations

import pytest
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


def test_command_line_conventions(capsys):
    from msa_hf import __version__
    from msa_hf.cli import build_parser
    from msa_hf.encoder_pretraining.command import build_parser as pretrain_parser
    from msa_hf.training.config import build_train_parser

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"msa-hf {__version__}"
    # every command's help names its defaults
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in ("convert", "prepare", "evaluate", "predict", "push", "base-gate", "pretrain-base"):
        assert "(default: " in commands[name].format_help(), name
    train_help = build_train_parser("msa-hf train").format_help()
    assert train_help.startswith("usage: msa-hf train") and "(default: msa)" in train_help
    assert "(default: 0.75)" in pretrain_parser().format_help()
    # underscore spellings, as transformers' scripts accept them
    args = parser.parse_args(["evaluate", "model", "--dataset", "d", "--batch_size", "4", "--clicks=3"])
    assert args.batch_size == 4 and args.clicks == 3
    assert (
        parser.parse_args(
            ["push", "run", "org/name", "--adapter_repo_id=org/a", "--token", "t"]
        ).adapter_repo_id
        == "org/a"
    )
    train_args = build_train_parser().parse_args(["--output_dir", "runs/x", "--learning_rate", "0.01"])
    assert train_args.output_dir == "runs/x" and train_args.learning_rate == 0.01
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "model", "--no_such_flag", "1"])


def test_one_spelling_per_concept_and_the_old_ones_with_a_notice(capsys):
    from msa_hf.cli import build_parser
    from msa_hf.encoder_pretraining.command import build_parser as pretrain_parser
    from msa_hf.training.config import parse_train_config

    parser = build_parser()
    for argv in (["prepare", "src", "--output-dir", "out"], ["convert", "a.pth", "--output_dir=out"]):
        assert parser.parse_args(argv).output == "out"
    assert capsys.readouterr().err == ""  # the current spellings say nothing
    for argv in (
        ["prepare", "src", "out"],
        ["evaluate", "model", "--output", "out"],
        ["pretrain-base", "out"],
    ):
        assert parser.parse_args(argv).output == "out"
        assert "deprecated" in capsys.readouterr().err
    assert pretrain_parser().parse_args(["data", "out"]).output == "out"
    assert parser.parse_args(["build-default-data"]).output == "data/mni152-objects"
    with pytest.raises(SystemExit):
        parser.parse_args(["prepare", "src"])  # nowhere to write
    assert "--output-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["prepare", "src", "out", "--output-dir", "other"])  # two outputs
    capsys.readouterr()
    assert parser.parse_args(["evaluate", "m", "--classes", "liver,spleen", "kidney"]).classes == [
        "liver,spleen",
        "kidney",
    ]
    config = parse_train_config(
        ["--overwrite", "--classes", "liver,spleen", "kidney", "--output-dir", "runs/x"]
    )
    assert config.overwrite_output_dir and config.classes == "liver,spleen,kidney"
    assert capsys.readouterr().err == ""
    assert parse_train_config(["--overwrite-output-dir"]).overwrite_output_dir
    assert "--overwrite-output-dir is now --overwrite" in capsys.readouterr().err
    assert not parse_train_config(["--no-overwrite-output-dir"]).overwrite_output_dir
