"""train.py: config parsing, base loading errors, what each method trains, resume, DDP, 3-D."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch_support import needs_compiling_torch
from transformers import SamModel

from msa_hf.data import prepare_dataset
from msa_hf.training.base_loading import BaseLoadError, load_base
from msa_hf.training.config import TrainConfig, parse_train_config
from msa_hf.training.job import latest_checkpoint, run_training

REPO = Path(__file__).resolve().parents[1]


def yaml_field(path: Path, name: str) -> str:
    """The value of a top-level `name: value` line of a YAML file, as written."""
    return next(
        line.split(":", 1)[1].strip() for line in path.read_text().splitlines() if line.startswith(f"{name}:")
    )


def _config(base: Path, dataset: Path, output: Path, **overrides) -> TrainConfig:
    values = dict(
        base=str(base), dataset=str(dataset), output_dir=str(output), steps=4, batch_size=4, eval_every=2,
        checkpoint_every=2, warmup_steps=1, log_with="none",
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def test_config_from_yaml_and_flags(tmp_path):
    (tmp_path / "run.yaml").write_text("steps: 50\nlearning_rate: 1e-3\naugment: false\nmethod: lora\n")
    config = parse_train_config(["--config", str(tmp_path / "run.yaml"), "--steps", "7", "--augment"])
    assert (config.steps, config.learning_rate, config.augment, config.method) == (7, 0.001, True, "lora")
    (tmp_path / "bad.yaml").write_text("stepz: 5\n")
    with pytest.raises(ValueError, match=r"unknown keys \['stepz'\]"):
        parse_train_config(["--config", str(tmp_path / "bad.yaml")])
    (tmp_path / "typed.yaml").write_text("steps: 2.5\n")
    with pytest.raises(ValueError, match="steps=2.5: expected an integer"):
        parse_train_config(["--config", str(tmp_path / "typed.yaml")])
    with pytest.raises(SystemExit):
        parse_train_config(["--method", "prompt-tuning"])
    with pytest.raises(ValueError, match="box_probability"):
        TrainConfig(box_probability=1.5)
    with pytest.raises(ValueError, match="learning_rate must be > 0, got -1"):
        parse_train_config(["--learning-rate", "-1"])
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        TrainConfig(weight_decay=-0.1)
    with pytest.raises(ValueError, match=r"window='foo': use one of \['abdomen'"):
        parse_train_config(["--window", "foo"])
    assert TrainConfig(window="liver").window == "liver"


def test_bases_that_cannot_load_say_why(tmp_path, monkeypatch):
    import huggingface_hub

    from msa_hf import SamAdapterModel
    from msa_hf.base_model import shipped as pretrained_base

    monkeypatch.setattr(pretrained_base, "TINY_BASE", str(tmp_path / "missing"))
    with pytest.raises(BaseLoadError, match="make base"):
        load_base("tiny", SamAdapterModel)
    # the Hub client reads HF_HUB_OFFLINE when imported: set it where it is read, or each load retries the
    # network for most of a minute before failing
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BaseLoadError, match="Hub id") as refused:
        load_base("facebook/sam-vit-base", SamAdapterModel)
    message = str(refused.value)
    assert message.startswith("base facebook/sam-vit-base:") and "hf download" in message
    assert message.endswith("or use --base tiny.")
    with pytest.raises(BaseLoadError, match="Hub id") as refused:  # a model to run, not a base to train
        load_base("facebook/sam-vit-base", SamAdapterModel, role="model")
    assert str(refused.value).startswith("model facebook/sam-vit-base:")
    assert str(refused.value).endswith("or use the shipped base, tiny.")
    # a local folder that cannot be read is damaged, not a download to make
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "config.json").write_text("{not json")
    with pytest.raises(BaseLoadError, match="save or download it again") as refused:
        load_base(str(tmp_path / "damaged"), SamAdapterModel)
    assert "Hub" not in str(refused.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BaseLoadError, match="no config.json"):
        load_base(str(tmp_path / "empty"), SamAdapterModel)
    with pytest.raises(BaseLoadError, match="no such file"):
        load_base(str(tmp_path / "sam.pth"), SamAdapterModel)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_msa_training_leaves_sam_weights_bit_identical(tiny_base, disk_dataset, tmp_path):
    result = run_training(_config(tiny_base, disk_dataset, tmp_path / "run", decoder_training="adapters"))
    assert result.steps == 4 and result.weights_agree
    base, trained = _weights(tiny_base), _weights(tmp_path / "run" / "model")
    adapters = [k for k in trained if "_adapter." in k]
    assert adapters and any(
        not torch.equal(trained[k], torch.zeros_like(trained[k])) for k in adapters if ".up." in k
    )
    for name, tensor in base.items():
        if name in trained:
            assert torch.equal(trained[name], tensor), f"{name} changed"
    assert (tmp_path / "run" / "model" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "run" / "model" / "processor_config.json").is_file()
    assert "box" in result.validation and (tmp_path / "run" / "best" / "config.json").is_file()


@pytest.mark.parametrize(
    ("method", "changes", "stays"),
    [
        (
            "full",
            ["vision_encoder.layers.0.attn.qkv.weight", "mask_decoder.iou_prediction_head.proj_out.weight"],
            [],
        ),
        (
            "decoder",
            ["mask_decoder.iou_prediction_head.proj_out.weight"],
            ["vision_encoder.layers.0.attn.qkv.weight"],
        ),
        (
            "lora",
            ["mask_decoder.iou_prediction_head.proj_out.weight"],
            ["vision_encoder.layers.0.attn.qkv.weight"],
        ),
    ],
)
def test_baseline_methods_train_what_they_claim(tiny_base, disk_dataset, tmp_path, method, changes, stays):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # e.g. peft's read of a deprecated property, silenced
        run_training(
            _config(tiny_base, disk_dataset, tmp_path / method, method=method, steps=2, eval_every=2)
        )
    base = _weights(tiny_base)
    trained = _weights(tmp_path / method / "model")  # LoRA: the merged model
    for name in changes:
        assert not torch.equal(trained[name], base[name]), f"{method}: {name} did not train"
    for name in stays:
        if method == "lora":  # merged LoRA changes qkv by B @ A, which starts at zero and moves a little
            adapter = load_file(str(tmp_path / method / "model" / "adapter" / "adapter_model.safetensors"))
            assert any("lora_A" in k for k in adapter)
        else:
            assert torch.equal(trained[name], base[name]), f"{method}: {name} changed"


def _launch(args: list[str], env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_kill_and_resume_gives_the_uninterrupted_weights(tiny_base, disk_dataset, tmp_path):
    common = ["--base", str(tiny_base), "--dataset", str(disk_dataset), "--steps", "6", "--batch-size", "4",
              "--checkpoint-every", "1", "--eval-every", "100", "--warmup-steps", "2", "--log-with", "none"]  # fmt: skip
    straight = _launch([*common, "--output-dir", str(tmp_path / "straight")])
    interrupted = _launch([*common, "--output-dir", str(tmp_path / "interrupted")])
    deadline = time.time() + 300
    while latest_checkpoint(tmp_path / "interrupted") is None and time.time() < deadline:
        time.sleep(0.05)
    interrupted.send_signal(signal.SIGKILL)  # kill -9 right after the first checkpoint
    interrupted.wait()
    assert straight.wait(timeout=600) == 0, straight.stdout.read()
    killed_at = json.loads((latest_checkpoint(tmp_path / "interrupted") / "trainer_state.json").read_text())[
        "step"
    ]
    assert killed_at < 6
    resumed = _launch([*common, "--output-dir", str(tmp_path / "interrupted"), "--resume", "latest"])
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert "resumed from" in output and f"at step {killed_at}" in output
    a, b = _weights(tmp_path / "straight" / "model"), _weights(tmp_path / "interrupted" / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.ddp
def test_two_process_ddp_run_on_cpu(tiny_base, disk_dataset, tmp_path):
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        str(REPO / "train.py"), "--base", str(tiny_base), "--dataset", str(disk_dataset),
        "--output-dir", str(tmp_path / "ddp"), "--steps", "2", "--batch-size", "2", "--eval-every", "2",
        "--checkpoint-every", "2", "--log-with", "none",
    ]  # fmt: skip
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "ddp" / "train_result.json").read_text())
    assert result["num_processes"] == 2 and result["weights_agree"]
    # one process scores the test split and writes the card (every rank used to, into the same files)
    assert (
        done.stdout.count("Test-split Dice per structure") == 1 and done.stdout.count("trained msa on") == 1
    )
    assert "model-index:" in (tmp_path / "ddp" / "model" / "README.md").read_text()
    from msa_hf import SamAdapterModel

    reloaded = SamAdapterModel.from_pretrained(tmp_path / "ddp" / "model")
    checkpoint = latest_checkpoint(tmp_path / "ddp")
    state = load_file(str(checkpoint / "model.safetensors"))
    assert all(
        torch.equal(reloaded.state_dict()[k], v) for k, v in state.items() if k in reloaded.state_dict()
    )


def test_three_d_training_with_the_depth_branch(tiny_base, tmp_path, capsys):
    import nibabel as nib

    source = tmp_path / "vol"
    (source / "imagesTr").mkdir(parents=True)
    (source / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        image = rng.normal(100, 10, (32, 32, 8)).astype(np.float32)
        label = np.zeros((32, 32, 8), np.uint8)
        label[8:20, 10:22, 1:7] = 1
        image[label > 0] += 300
        nib.save(nib.Nifti1Image(image, np.eye(4)), source / "imagesTr" / f"c{index}_0000.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), source / "labelsTr" / f"c{index}.nii.gz")
    prepare_dataset(source, tmp_path / "prepared", split=(0.5, 0.25, 0.25), modality="MR")
    config = _config(tiny_base, tmp_path / "prepared", tmp_path / "run3d", use_depth_branch=True, num_slices=4,
                     batch_size=1, steps=2, eval_every=2)  # fmt: skip
    # through train.py's main, which prints the whole-volume comparison for depth models
    from msa_hf.training.job import main

    assert main(["--base", str(tiny_base), "--dataset", str(tmp_path / "prepared"), "--output-dir",
                 str(tmp_path / "run3d"), "--use-depth-branch", "--num-slices", "4", "--batch-size", "1",
                 "--steps", "2", "--eval-every", "2", "--checkpoint-every", "2", "--warmup-steps", "1",
                 "--log-with", "none"]) == 0  # fmt: skip
    assert "Test-split Dice per structure on whole volumes" in capsys.readouterr().out
    result = json.loads((tmp_path / "run3d" / "train_result.json").read_text())
    assert result["steps"] == 2 and "points1" in result["validation"] and "box" not in result["validation"]
    trained = _weights(tmp_path / "run3d" / "model")
    assert any("depth_adapter" in k for k in trained)
    # the slice spacing its depth branch learned (the cases' 1 mm), which inference resamples volumes to
    from msa_hf.processing.processor import MsaProcessor

    saved = MsaProcessor.from_pretrained(tmp_path / "run3d" / "model")
    assert saved.slice_spacing == 1.0 and saved.planes == ("axial",)  # and the planes its rows were cut in

    # the test comparison on whole volumes: each column is evaluate_volumes of that model, and the card's
    # headline metric is the adapted model's mean
    from msa_hf import SamAdapterModel
    from msa_hf.evaluation.protocols import evaluate_volumes
    from msa_hf.training.test_report import volume_test_comparison

    printed = volume_test_comparison(config, tmp_path / "run3d")
    assert (
        "| structure | zero-shot volume_points1 | msa volume_points1 | zero-shot volume_propagation | "
        "msa volume_propagation |" in printed
    )
    reports = {
        name: evaluate_volumes(model, tmp_path / "prepared", "test", depth=4)
        for name, model in (
            ("zero-shot", SamAdapterModel.from_pretrained(tiny_base)),
            ("msa", SamAdapterModel.from_pretrained(tmp_path / "run3d" / "model")),
        )
    }
    expected = {name: report["tables"]["volume_points1"] for name, report in reports.items()}
    cells = [
        reports[name]["tables"][protocol]["class_1"]["dice"]
        for protocol in ("volume_points1", "volume_propagation")
        for name in ("zero-shot", "msa")
    ]
    row = next(line for line in printed.splitlines() if line.startswith("| class_1 |"))
    assert row == "| class_1 | " + " | ".join(f"{v:.3f}" for v in cells) + " |"
    curve = ", ".join(f"{d:.3f}" for d in reports["msa"]["volume_propagation"]["dice_per_click"])
    assert f"msa {curve}" in printed
    from huggingface_hub import ModelCard

    card = ModelCard((tmp_path / "run3d" / "model" / "README.md").read_text())
    (dice,) = [
        r for r in card.data.eval_results if (r.metric_type, r.metric_config) == ("dice", "volume_points1")
    ]
    assert (
        dice.metric_name == "Dice (3-D volumes, one click per slice, per case)"
        and dice.dataset_split == "test"
    )
    assert dice.metric_value == round(expected["msa"]["class_1"]["dice"], 4)
    assert any(r.metric_config == "volume_propagation" for r in card.data.eval_results)
    for protocol in ("volume_points1", "volume_propagation"):
        assert (tmp_path / "run3d" / "evaluation" / f"cases_{protocol}.csv").read_text().count("class_1") == 1
    assert "- 3-D: a depth branch attends across 4 slices, trained on slices 1 mm apart;" in card.text
    assert json.loads((tmp_path / "run3d" / "train_result.json").read_text())["slice_spacing"] == 1.0
    zero_shot = json.loads((tmp_path / "run3d" / "evaluation-zero-shot" / "results.json").read_text())
    assert (
        zero_shot["tables"]["volume_points1"]["class_1"]["dice"] == expected["zero-shot"]["class_1"]["dice"]
    )

    # msa-hf evaluate on the depth model writes its tables when asked, and refuses 2-D-only options
    from msa_hf.cli import main as cli_main

    arguments = ["evaluate", str(tmp_path / "run3d" / "model"), "--dataset", str(tmp_path / "prepared")]
    assert cli_main([*arguments, "--output", str(tmp_path / "eval3d")]) == 0
    written = json.loads((tmp_path / "eval3d" / "results.json").read_text())
    assert written["tables"]["volume_points1"]["class_1"]["dice"] == expected["msa"]["class_1"]["dice"]
    assert "HD95" in (tmp_path / "eval3d" / "results.md").read_text()
    assert cli_main([*arguments, "--protocols", "box"]) == 2
    assert "--protocols box are for 2-D models" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_runs_each_method_on_the_same_budget(tiny_base, disk_dataset, tmp_path):
    from msa_hf import SamAdapterModel
    from msa_hf.evaluation.protocols import evaluate_model
    from msa_hf.training.base_loading import load_base
    from msa_hf.training.compare import compare_methods

    config = _config(tiny_base, disk_dataset, tmp_path / "compare", steps=2, eval_every=2, classes="disk")
    table, results = compare_methods(config, ("msa", "msa+replay", "decoder"))
    lines = table.splitlines()
    assert lines[0] == (
        "| variant | trainable | share | adapted box | adapted 1 click | adapted iterative | held-out box | "
        "held-out 1 click | held-out iterative | train min | peak MB |"
    )
    rows = {line.split(" | ")[0][2:]: line.strip("| ").split(" | ") for line in lines[2:]}
    assert list(rows) == ["zero-shot base", "msa", "msa+replay", "decoder"]
    for method in ("msa", "msa+replay", "decoder"):
        train = results[method]["train"]
        assert train["steps"] == 2 and train["peak_memory_mb"] > 0
        assert set(results[method]["test"]["adapted"]["box"]) == {"disk"}
        assert set(results[method]["test"]["held-out"]["box"]) == {"square"}
    assert (
        results["msa"]["train"]["trainable_parameters"] != results["decoder"]["train"]["trainable_parameters"]
    )
    # replay changed the run, the rest of its settings did not: same parameters, other weights
    assert (
        results["msa"]["train"]["trainable_parameters"]
        == results["msa+replay"]["train"]["trainable_parameters"]
    )
    assert yaml_field(tmp_path / "compare" / "msa+replay" / "train_config.yaml", "replay_share") == "0.25"
    # each cell is evaluate_model's mean over the structures
    base = evaluate_model(
        load_base(str(tiny_base), SamAdapterModel), disk_dataset, "test", ("box",), classes="disk"
    )
    assert float(rows["zero-shot base"][3]) == round(base["tables"]["box"]["disk"]["dice"], 3)
    trained = SamAdapterModel.from_pretrained(tmp_path / "compare" / "msa" / "model")
    held = evaluate_model(trained, disk_dataset, "test", ("points1",), classes="square")
    assert float(rows["msa"][7]) == round(held["tables"]["points1"]["square"]["dice"], 3)
    assert (tmp_path / "compare" / "comparison.md").read_text().strip() == table


def test_train_main_prints_the_test_table_and_writes_the_card(tiny_base, disk_dataset, tmp_path, capsys):
    from msa_hf.training.job import main

    code = main(["--base", str(tiny_base), "--dataset", str(disk_dataset), "--output-dir", str(tmp_path / "run"),
                 "--steps", "2", "--batch-size", "4", "--eval-every", "2", "--log-with", "none"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| structure | zero-shot box | msa box |" in printed and "| disk |" in printed
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    results = json.loads((tmp_path / "run" / "evaluation" / "results.json").read_text())
    mean_box = np.mean([v["dice"] for v in results["tables"]["box"].values()])
    from huggingface_hub import ModelCard

    (box,) = [
        r for r in ModelCard(card).data.eval_results if (r.metric_type, r.metric_config) == ("dice", "box")
    ]
    assert box.metric_value == round(mean_box, 4) and "steps: 2" in card
    assert "3-D" not in card  # a 2-D model: no depth-branch bullet
    assert (tmp_path / "run" / "evaluation" / "overlays.png").is_file()
    assert main(["--base", str(tmp_path / "missing"), "--dataset", str(disk_dataset)]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_activation_checkpointing_trains_the_same_weights(tiny_base, disk_dataset, tmp_path):
    plain = run_training(_config(tiny_base, disk_dataset, tmp_path / "plain", steps=2, eval_every=100))
    # a run not (yet) scored on its test split still gets a card, saying so and claiming no metric
    from huggingface_hub import ModelCard

    from msa_hf.hub.model_card import NOT_EVALUATED

    card = ModelCard((tmp_path / "plain" / "model" / "README.md").read_text())
    assert card.data.eval_results is None and card.data.license == "apache-2.0"
    assert NOT_EVALUATED in card.text and "nan" not in card.content.lower()
    checkpointed = run_training(
        _config(
            tiny_base, disk_dataset, tmp_path / "ckpt", steps=2, eval_every=100, gradient_checkpointing=True
        )
    )
    assert plain.steps == checkpointed.steps == 2
    a, b = _weights(tmp_path / "plain" / "model"), _weights(tmp_path / "ckpt" / "model")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any(not torch.equal(a[k], torch.zeros_like(a[k])) for k in a if "space_adapter.up" in k)


def test_keeping_the_frozen_mlp_activations_trains_the_same_weights(
    tiny_base, disk_dataset, tmp_path, monkeypatch
):
    import msa_hf.training.job

    switched = []
    switch = msa_hf.training.job.set_frozen_mlp_recompute
    monkeypatch.setattr(msa_hf.training.job, "set_frozen_mlp_recompute",
                        lambda model, enabled: switched.append((enabled, switch(model, enabled))))  # fmt: skip
    run_training(_config(tiny_base, disk_dataset, tmp_path / "recompute", steps=2, eval_every=100))
    run_training(_config(tiny_base, disk_dataset, tmp_path / "keep", steps=2, eval_every=100,
                         recompute_frozen_mlp=False))  # fmt: skip
    assert [enabled for enabled, _ in switched] == [True, False] and all(blocks > 0 for _, blocks in switched)
    a, b = _weights(tmp_path / "recompute" / "model"), _weights(tmp_path / "keep" / "model")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any(not torch.equal(a[k], torch.zeros_like(a[k])) for k in a if "mlp_adapter.up" in k)


@pytest.mark.slow
@needs_compiling_torch
def test_compiled_training_trains_the_same_weights(tiny_base, disk_dataset, tmp_path):
    # box prompts alone: each prompt kind (and the iterative protocol's mask input) is a graph of its own,
    # compiled forward and backward, minutes on two cores when inductor's cache is cold (a fresh checkout)
    fixed = dict(steps=2, eval_every=100, box_probability=1.0, iterative_probability=0.0)
    plain = run_training(_config(tiny_base, disk_dataset, tmp_path / "plain", **fixed))
    compiled = run_training(_config(tiny_base, disk_dataset, tmp_path / "compiled", compile=True, **fixed))
    assert plain.steps == compiled.steps == 2
    a, b = _weights(tmp_path / "plain" / "model"), _weights(tmp_path / "compiled" / "model")
    assert set(a) == set(b)  # compiled in place: the saved names are the model's own
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert any(not torch.equal(a[k], torch.zeros_like(a[k])) for k in a if "space_adapter.up" in k)


@pytest.mark.slow
def test_a_short_run_learns_on_the_embedded_dataset(tmp_path):
    """Full fine-tuning of a small random SAM on the MNI152 tissue data must beat the untrained model
    clearly on validation box Dice: a learning check of the loop itself, independent of any base."""
    from msa_hf.base_model.pretraining import base_config, initialise_from_scratch
    from msa_hf.data import build_mni152_tissue_dataset
    from msa_hf.training.datasets import task_dataset
    from msa_hf.training.prompted import evaluate_segmentation

    build_mni152_tissue_dataset(tmp_path / "mni")
    base = initialise_from_scratch(SamModel(base_config()), seed=0)
    base.save_pretrained(tmp_path / "base")
    config = _config(tmp_path / "base", tmp_path / "mni", tmp_path / "run", method="full", steps=60, batch_size=8,
                     eval_every=60, checkpoint_every=60, learning_rate=2e-3, warmup_steps=5, iterative_probability=0.0,
                     box_probability=1.0)  # fmt: skip
    validation, _ = task_dataset(config, "validation", 128, train=False)
    before = evaluate_segmentation(SamModel.from_pretrained(tmp_path / "base"), validation, "box")["dice"]
    result = run_training(config)
    after = result.validation["box"]
    assert after > before + 0.15, (before, after)


def test_gradient_accumulation_equals_the_larger_batch(tiny_base, disk_dataset, tmp_path):
    fixed = dict(steps=2, eval_every=100, box_probability=1.0, iterative_probability=0.0, augment=False)
    run_training(_config(tiny_base, disk_dataset, tmp_path / "big", batch_size=4, **fixed))
    run_training(
        _config(
            tiny_base, disk_dataset, tmp_path / "acc", batch_size=2, gradient_accumulation_steps=2, **fixed
        )
    )
    a, b = _weights(tmp_path / "big" / "model"), _weights(tmp_path / "acc" / "model")
    moved = [k for k in a if "_adapter.up" in k]
    assert moved and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_mixed_precision_comes_from_the_launcher(tiny_base, disk_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    result = run_training(_config(tiny_base, disk_dataset, tmp_path / "bf16", steps=2, eval_every=2))
    assert result.steps == 2 and np.isfinite(result.validation["box"])
    saved = _weights(tmp_path / "bf16" / "model")
    assert all(t.dtype == torch.float32 for t in saved.values())  # master weights stay fp32


def test_text_prompt_training_through_train_py(tiny_base, disk_dataset, tmp_path):
    from PIL import Image

    from msa_hf import SamAdapterModel
    from msa_hf.cli import main as cli
    from msa_hf.testing import tiny_text_encoder

    tiny_text_encoder().save_pretrained(tmp_path / "clip")
    (tmp_path / "descriptions.json").write_text(json.dumps({"disk": ["the bright round blob"]}))
    config = _config(
        tiny_base, disk_dataset, tmp_path / "run", steps=3, eval_every=100, evaluate_test=False,
        text_prompts=True, text_encoder=str(tmp_path / "clip"), text_only_probability=0.5,
        text_descriptions=str(tmp_path / "descriptions.json"),
    )  # fmt: skip
    run_training(config)
    model = SamAdapterModel.from_pretrained(tmp_path / "run" / "model")
    assert model.config.text_embedding_dim == 32 and model.config.text_encoder_name == str(tmp_path / "clip")
    Image.fromarray(np.full((40, 40), 120, np.uint8)).save(tmp_path / "slice.png")
    assert cli(["predict", str(tmp_path / "run" / "model"), str(tmp_path / "slice.png"), str(tmp_path / "m.png"),
                "--text", "disk"]) == 0  # fmt: skip
    with pytest.raises(ValueError, match="text_prompts needs"):
        _config(tiny_base, disk_dataset, tmp_path / "x", text_prompts=True)


def test_training_descriptions_come_from_templates_and_the_users_file(tmp_path):
    from msa_hf.testing import tiny_text_encoder
    from msa_hf.training.text_training import batch_descriptions, read_descriptions

    (tmp_path / "d.json").write_text(json.dumps({"disk": ["the bright round blob"]}))
    batch = {"class_name": ["disk"] * 40, "modality": ["MR"] * 40}
    texts = batch_descriptions(batch, np.random.default_rng(0), read_descriptions(tmp_path / "d.json"))
    assert "the bright round blob" in texts and "a MRI image of the disk" in texts
    encoder = tiny_text_encoder()
    features = encoder.cached(texts)
    assert features.shape == (40, 32)
    for index, text in enumerate(texts):  # one computation per distinct text, the same row for it every time
        torch.testing.assert_close(features[index], encoder([text])[0], atol=1e-6, rtol=0)
    (tmp_path / "bad.json").write_text(json.dumps({"disk": "not a list"}))
    with pytest.raises(ValueError, match="expected"):
        read_descriptions(tmp_path / "bad.json")


def test_resuming_with_other_settings_is_refused_and_the_record_kept(tmp_path):
    from msa_hf.training.job import check_resume_config

    recorded = _config(tmp_path / "base", tmp_path / "data", tmp_path / "run")
    (tmp_path / "run").mkdir()
    record = tmp_path / "run" / "train_config.yaml"
    record.write_text(recorded.to_yaml())
    same = _config(
        tmp_path / "base",
        tmp_path / "data",
        tmp_path / "run",
        resume="latest",
        eval_every=1,
        gradient_checkpointing=True,
    )
    check_resume_config(same, tmp_path / "run")  # reporting settings may change
    other = _config(
        tmp_path / "base", tmp_path / "data", tmp_path / "run", resume="latest", learning_rate=5e-4, steps=9
    )
    with pytest.raises(
        ValueError, match=r"steps: recorded 4, asked 9; learning_rate: recorded 0\.001, asked 0\.0005"
    ):
        check_resume_config(other, tmp_path / "run")
    # through the job: refused before anything is built or written
    with pytest.raises(ValueError, match="continues the recorded run exactly"):
        run_training(other)
    assert record.read_text() == recorded.to_yaml() and sorted(
        p.name for p in (tmp_path / "run").iterdir()
    ) == ["train_config.yaml"]
    check_resume_config(other, tmp_path / "no-record-yet")  # older runs without a record are not checked


def test_adapting_to_some_structures_trains_and_scores_only_those(tiny_base, disk_dataset, tmp_path):
    from msa_hf.data import read_class_names, select_class_names
    from msa_hf.evaluation.protocols import evaluate_model
    from msa_hf.training.datasets import task_dataset

    names = read_class_names(disk_dataset)
    disk = next(value for value, name in names.items() if name == "disk")
    assert select_class_names(names, "disk") == {disk: "disk"}
    assert select_class_names(names, f" {disk} ,disk") == {disk: "disk"}  # a value and a name, the same one
    assert select_class_names(names, None) == dict(names)
    with pytest.raises(ValueError, match=r"'liver' is not a structure of this dataset; choose from disk \("):
        select_class_names(names, "disk,liver")
    config = _config(tiny_base, disk_dataset, tmp_path / "run", classes="disk")
    everything, _ = task_dataset(_config(tiny_base, disk_dataset, tmp_path / "all"), "train", 64, train=True)
    only_disks, _ = task_dataset(config, "train", 64, train=True)
    kept = set(only_disks.with_format(None)["class_name"])
    assert kept == {"disk"} and 0 < len(only_disks) < len(everything)
    model = load_base(str(tiny_base), SamModel)
    tables = evaluate_model(model, disk_dataset, "test", ("box",), classes="disk")["tables"]["box"]
    assert set(tables) - {"mean"} == {"disk"}
    assert parse_train_config(["--classes", "disk,square"]).classes == "disk,square"


def test_saving_the_training_state_drops_only_the_tied_embedding_notice(caplog, tmp_path):
    """accelerate's "Removed shared tensor" notice is a false alarm for SAM's tied positional embedding (the
    resume test shows the weights come back exactly), so it is dropped; any other removal still warns."""
    import logging

    from accelerate import PartialState
    from accelerate.utils.other import clean_state_dict_for_safetensors

    from msa_hf.training.state import save_training_state

    PartialState()  # accelerate's logger needs its state

    class SavesLikeAccelerate:  # the writer accelerate's save_state runs, on a tied and an untied pair
        def save_state(self, folder: str) -> None:
            tied, other = torch.zeros(2), torch.zeros(3)
            clean_state_dict_for_safetensors(
                {"base_model.model.shared_image_embedding.positional_embedding": tied,
                 "base_model.model.prompt_encoder.shared_embedding.positional_embedding": tied}
            )  # fmt: skip
            clean_state_dict_for_safetensors({"a.weight": other, "b.weight": other})

    with caplog.at_level(logging.WARNING):
        save_training_state(SavesLikeAccelerate(), tmp_path)
    messages = [record.getMessage() for record in caplog.records]
    assert not any("shared_embedding" in message for message in messages)
    assert any("Removed shared tensor {'b.weight'}" in message for message in messages)
    assert not logging.getLogger("accelerate.utils.other").filters  # the filter does not outlive the save


def test_a_fresh_run_does_not_overwrite_an_earlier_one_unasked(tiny_base, disk_dataset, tmp_path):
    run_dir = tmp_path / "run"
    run_training(_config(tiny_base, disk_dataset, run_dir, steps=2, eval_every=100))
    (run_dir / "evaluation").mkdir()  # as train.py's test table leaves it
    weights = (run_dir / "model" / "model.safetensors").read_bytes()
    with pytest.raises(
        ValueError, match=r"holds an earlier run \(checkpoints, model, .*--overwrite to replace"
    ):
        run_training(_config(tiny_base, disk_dataset, run_dir, steps=2, eval_every=100, seed=1))
    assert (run_dir / "model" / "model.safetensors").read_bytes() == weights  # nothing lost
    run_training(
        _config(tiny_base, disk_dataset, run_dir, steps=2, eval_every=100, seed=1, overwrite_output_dir=True)
    )
    assert (run_dir / "model" / "model.safetensors").read_bytes() != weights  # replaced, seed 1's weights
    assert not (run_dir / "evaluation").exists()  # no result of the earlier run beside the new one
    # a run that failed before training (a mistyped base) leaves only its config, and is simply run again
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "train_config.yaml").write_text("steps: 2\n")
    run_training(_config(tiny_base, disk_dataset, failed, steps=1, eval_every=100))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"learning_rate": float("inf")}, "learning_rate must be finite, got inf"),
        ({"learning_rate": float("nan")}, "learning_rate must be > 0, got nan"),
        ({"dice_weight": -1.0}, "dice_weight must be >= 0, got -1.0"),
        ({"eval_every": 0}, "eval_every must be >= 1, got 0"),
        ({"checkpoint_every": 0}, "checkpoint_every must be >= 1, got 0"),
        ({"num_clicks": 0}, "num_clicks must be >= 1, got 0"),
        ({"weight_decay": float("inf")}, "weight_decay must be finite"),
    ],
)
def test_every_number_is_checked_before_the_base_loads(change, message):
    from msa_hf.training.config import TrainConfig

    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(base="never-loaded", dataset="never-read", **change)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(
    tiny_base, disk_dataset, tmp_path, monkeypatch
):
    import msa_hf.training.job as job

    real_loss, calls = job.prompted_training_loss, []

    def loss_that_blows_up(*args, **kwargs):
        loss, parts = real_loss(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan"), parts) if len(calls) == 3 else (loss, parts)

    monkeypatch.setattr(job, "prompted_training_loss", loss_that_blows_up)
    with pytest.raises(
        ValueError,
        match=r"step 3: the training loss is not finite \(this process's loss nan, gradient norm nan\).*"
        r"checkpoint \(step-0000002\) is intact",
    ) as error:
        run_training(_config(tiny_base, disk_dataset, tmp_path / "run", steps=4, eval_every=100))
    assert "--learning-rate" in str(error.value)
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert (
        checkpoint is not None
        and checkpoint.name == "step-0000002"
        and not (tmp_path / "run" / "model").exists()
    )


def test_a_run_on_some_structures_reports_box_fill_and_the_held_out_ones_before_and_after(
    tiny_base, disk_dataset, tmp_path, capsys
):
    from msa_hf import SamAdapterModel
    from msa_hf.evaluation.protocols import evaluate_model
    from msa_hf.training.job import main
    from msa_hf.training.test_report import held_out_classes

    code = main(["--base", str(tiny_base), "--dataset", str(disk_dataset), "--output-dir", str(tmp_path / "run"),
                 "--steps", "2", "--batch-size", "4", "--eval-every", "2", "--log-with", "none",
                 "--classes", "disk"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert held_out_classes(_config(tiny_base, disk_dataset, tmp_path / "x", classes="disk")) == "square"
    adapted, held_out = printed.split("Structures not adapted to (held out)")
    header = "| structure | zero-shot box | msa box | box-fill | zero-shot points1 | msa points1 |"
    assert header in adapted and "| disk |" in adapted and "| square |" not in adapted
    assert header in held_out and "| square |" in held_out and "| disk |" not in held_out
    # each cell is evaluate_model's: the held-out row of the trained model, and box-fill beside the box
    trained = SamAdapterModel.from_pretrained(tmp_path / "run" / "model")
    tables = evaluate_model(trained, disk_dataset, "test", ("box", "points1", "iterative"), classes="square")
    row = next(line for line in held_out.splitlines() if line.startswith("| square |")).split("|")
    assert float(row[3]) == round(tables["tables"]["box"]["square"]["dice"], 3)
    assert float(row[4]) == round(tables["tables"]["box_fill"]["square"]["dice"], 3)
    assert (tmp_path / "run" / "evaluation-held-out" / "results.json").is_file()
    # the base's own task, before and after: the data engine's held-out pictures at the model's input size
    from msa_hf.base_model.held_out import evaluate_prompted_segmentation, held_out_set, samples_at_size
    from msa_hf.training.base_loading import load_base
    from msa_hf.training.test_report import SYNTHETIC_HELD_OUT_SAMPLES

    assert "The base's own task" in held_out
    images, masks = samples_at_size(
        *held_out_set(SYNTHETIC_HELD_OUT_SAMPLES), trained.config.vision_config.image_size
    )
    for name, model in (("zero-shot", load_base(str(tiny_base), SamAdapterModel)), ("msa", trained)):
        expected = evaluate_prompted_segmentation(model, images, masks)
        row = next(line for line in held_out.splitlines() if line.startswith(f"| {name} |")).split("|")
        assert [float(cell) for cell in row[2:6]] == [
            round(expected[key], 3) for key in ("box", "box_fill", "points1", "iterative")
        ]
    assert (tmp_path / "run" / "evaluation" / "synthetic_held_out.json").is_file()


def test_data_workers_train_the_weights_of_in_process_loading(tiny_base, disk_dataset, tmp_path, capsys):
    """Workers read, augment and prompt the rows; kept across epochs, they must still see each epoch's new
    prompt seed (7 steps of 3 batches per epoch: three epochs), or the weights would differ."""
    runs = {
        workers: run_training(
            _config(
                tiny_base,
                disk_dataset,
                tmp_path / f"w{workers}",
                steps=7,
                eval_every=100,
                checkpoint_every=100,
                num_workers=workers,
            )
        )  # fmt: skip
        for workers in (0, 2)
    }
    a, b = _weights(tmp_path / "w0" / "model"), _weights(tmp_path / "w2" / "model")
    assert any(not torch.equal(a[k], torch.zeros_like(a[k])) for k in a if "space_adapter.up" in k)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for result in runs.values():  # throughput of steps 2-7: 6 batches of 4 images
        assert result.images_per_second > 0 and 0 <= result.data_wait_share <= 1
        assert result.first_step_seconds > 0
        assert result.images_per_second * result.seconds >= 6 * 4  # the steps are part of the whole run
    saved = json.loads((tmp_path / "w2" / "train_result.json").read_text())
    assert saved["images_per_second"] == pytest.approx(runs[2].images_per_second)


def test_loader_options_feed_a_gpu_from_workers_and_pinned_memory(monkeypatch):
    from msa_hf.training.datasets import MAX_DEFAULT_WORKERS, loader_options

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert loader_options(None, "cpu") == {"num_workers": 0, "pin_memory": False}
    gpu = loader_options(None, "cuda")
    assert gpu == {"num_workers": MAX_DEFAULT_WORKERS, "pin_memory": True, "persistent_workers": True,
                   "prefetch_factor": 4}  # fmt: skip
    assert (
        loader_options(None, "cuda:1", processes=4)["num_workers"] == 3
    )  # 4 cores each, one for the process
    assert loader_options(None, "cuda", processes=16)["num_workers"] == 1
    assert loader_options(3, "cpu") == {"num_workers": 3, "pin_memory": False, "persistent_workers": True,
                                        "prefetch_factor": 4}  # fmt: skip
