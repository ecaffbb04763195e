"""The base model's acceptance gate: which numbers it judges, and the box-overlap measure behind its MRI check."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from msa_hf.base_model.gate import box_overlap_between_classes, gate_verdict, mri_gate
from msa_hf.data import prepare_dataset
from msa_hf.training.prompted import AdapterTrainingConfig


def test_box_overlap_between_classes_by_hand(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    label = np.zeros((32, 32), np.uint8)
    label[0:10, 0:10] = label[20:30, 0:10] = 1  # box x 0-10, y 0-30
    label[10:20, 5:15] = 2  # box x 5-15, y 10-20
    label[2:8, 12:16] = 3  # box x 12-16, y 2-8: apart from both
    for index in range(4):
        Image.fromarray(label * 60).save(source / f"case{index}.png")
        Image.fromarray(label).save(source / f"case{index}_mask.png")
    (source / "labels.txt").write_text("1 a\n2 b\n3 c\n")
    prepare_dataset(source, tmp_path / "prepared", split=(0.5, 0.0, 0.5))
    overlaps = box_overlap_between_classes(tmp_path / "prepared", "test")
    # a/b: 5 x 10 px in common over 300 + 100 - 50
    assert math.isclose(overlaps["a/b"], 50 / 350, rel_tol=1e-6)
    assert overlaps["a/c"] == 0.0 and overlaps["b/c"] == 0.0


def test_the_mri_check_judges_one_click_dice_against_random_init_and_box_fill():
    synthetic = {"box": 0.86, "points1": 0.7, "box_fill": 0.7}
    mri = {
        "pretrained": {"box": 0.40, "points1": 0.47},
        "random_init": {"box": 0.39, "points1": 0.40},
        "box_fill": 0.415,
    }
    assert all(gate_verdict(synthetic, mri).values())
    weak = {**mri, "pretrained": {"box": 0.60, "points1": 0.44}}  # a better box does not pass a weak click
    verdict = gate_verdict(synthetic, weak)
    assert not verdict["mri_above_random_init"] and verdict["mri_above_box_fill"]
    assert not gate_verdict({**synthetic, "box": 0.849}, mri)["synthetic_box"]


def test_the_mri_gate_adapts_per_class_and_averages_seeds_then_classes(tiny_base, disk_dataset):
    results = mri_gate(tiny_base, disk_dataset, AdapterTrainingConfig(steps=2, batch_size=2), seeds=(0, 1))
    assert results["seeds"] == [0, 1] and results["protocol"] == "per_class"
    classes = results["classes"]
    assert set(classes) == {"disk", "square"}
    for name in ("pretrained", "random_init"):
        for scores in classes.values():
            per_seed = scores[name]["per_seed"]
            assert [r["seed"] for r in per_seed] == [0, 1]
            assert math.isclose(
                scores[name]["points1"], (per_seed[0]["points1"] + per_seed[1]["points1"]) / 2
            )
        mean = (classes["disk"][name]["points1"] + classes["square"][name]["points1"]) / 2
        assert math.isclose(results[name]["points1"], mean)
    # the two models' runs differ (different weights)
    assert classes["disk"]["pretrained"]["per_seed"] != classes["disk"]["random_init"]["per_seed"]
    assert math.isclose(
        results["box_fill"], (classes["disk"]["box_fill"] + classes["square"]["box_fill"]) / 2
    )
    assert 0.0 <= results["box_overlap"]["disk/square"] <= 1.0
