"""The whole-volume propagation protocol: the simulated user's clicks, and evaluate's scores of it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from msa_hf.evaluation.volume_propagation import propagate_with_corrections


class ScriptedVolume:
    """A `VolumePredictor` stand-in with known answers: a click prompt gives the structure's own mask on that
    slice when any click is positive (nothing when all are negative), and propagation gives every slice the
    mask of its nearest seed, except the slices a correction cleared. It records what it was asked."""

    def __init__(self, target: np.ndarray) -> None:
        self.target = target
        self.asked: list[tuple[int, list, list, bool]] = []
        self.propagations: list[tuple[list[int], list[int]]] = []

    def predict_masks(self, index, prompt, multimask=None, mask_prompt=None):
        labels = prompt.labels if prompt.labels is not None else [1] * len(prompt.points)
        self.asked.append((index, [list(p) for p in prompt.points], list(labels), mask_prompt is not None))
        mask = (
            self.target[index] if any(label == 1 for label in labels) else np.zeros_like(self.target[index])
        )
        return SimpleNamespace(mask=mask.copy(), low_res=np.zeros((1, 4, 4)), best=0)

    def propagate_seeds(
        self, seeds, carry_logits=True, seed_logits=None, empty_slices=(), keep_probabilities=False
    ):
        self.propagations.append((sorted(seeds), sorted(empty_slices)))
        order = sorted(seeds)
        masks = np.stack([seeds[min(order, key=lambda s: abs(s - i))] for i in range(len(self.target))])
        masks[list(empty_slices)] = False
        filled = [i for i in range(len(masks)) if masks[i].any() and i not in seeds]
        return SimpleNamespace(masks=masks, low_res={i: np.zeros((4, 4)) for i in filled})


def test_the_simulated_user_clicks_propagates_and_corrects_the_worst_slice():
    target = np.zeros((10, 24, 24), bool)
    target[2:7, 10:18, 10:18] = True  # an 8 x 8 square on slices 2-6
    volume = ScriptedVolume(target)
    rounds = propagate_with_corrections(volume, target, corrections=2)
    # the first click: the most interior pixel of the slice where the structure is largest (the first of equals)
    assert volume.asked[0] == (2, [[13.0, 13.0]], [1], False)
    # propagated from it, every slice is filled: 5 right, 5 leaked; then the worst slice (0, all leak) gets a
    # negative click, which clears it, and so does slice 1 after it
    assert [int(mask.sum()) for mask in rounds] == [640, 576, 512]
    assert (
        volume.asked[1][0] == 0 and volume.asked[1][2] == [0] and volume.asked[1][3]
    )  # with the slice's logits
    assert volume.asked[2][0] == 1 and volume.asked[2][2] == [0]
    assert volume.propagations == [([2], []), ([2], [0]), ([2], [0, 1])]
    for mask in rounds:
        np.testing.assert_array_equal(mask[2:7], target[2:7])


def test_a_correction_on_a_missed_slice_adds_a_seed_with_a_click_on_the_structure():
    target = np.zeros((6, 24, 24), bool)
    target[1:5, 4:20, 4:20] = True
    target[4, 4:20, 4:20] = False
    target[4, 6:10, 6:10] = True  # slice 4: a small part the first seed's copy mostly misses
    volume = ScriptedVolume(target)
    rounds = propagate_with_corrections(volume, target, corrections=1)
    index, points, labels, _ = volume.asked[1]
    # slices 0 and 5 leak 256 pixels each, slice 4 is 256 + 16 - 2 * 16 = 240 wrong: the first of the worst
    assert index == 0 and labels == [0]
    assert len(rounds) == 2
    # a round with nothing left to correct keeps the masks
    exact = np.zeros((3, 8, 8), bool)
    exact[:, 2:6, 2:6] = True
    scripted = ScriptedVolume(exact)
    again = propagate_with_corrections(scripted, exact, corrections=2)
    assert len(scripted.asked) == 1 and all(np.array_equal(mask, exact) for mask in again)
    # a structure on no slice the model sees: nothing to click, nothing found
    nothing = propagate_with_corrections(ScriptedVolume(exact), np.zeros_like(exact), corrections=1)
    assert len(nothing) == 2 and not any(mask.any() for mask in nothing)
    # a miss: the correction on that slice clicks the structure first, then the error
    missed = np.zeros((4, 24, 24), bool)
    missed[1, 4:20, 4:20] = True
    missed[3, 2:6, 2:6] = True  # a second part, far off: the seed's copy misses it
    scripted = ScriptedVolume(missed)
    propagate_with_corrections(scripted, missed, corrections=1)
    # slice 3 is worst (252 leaked + 12 missed): a click on its own part, then the negative one on the leak
    index, points, labels, _ = scripted.asked[1]
    assert index == 3 and labels == [1, 0] and points[0] == [3.0, 3.0]
    assert scripted.propagations[-1] == ([1, 3], [])


def ball_case(source, name: str, slices: np.ndarray, label: np.ndarray, slice_spacing: float) -> None:
    import nibabel as nib

    (source / "imagesTr").mkdir(parents=True, exist_ok=True)
    (source / "labelsTr").mkdir(parents=True, exist_ok=True)
    affine = np.diag([1.0, 1.0, slice_spacing, 1.0])
    for array, folder, suffix in ((slices, "imagesTr", "_0000"), (label, "labelsTr", "")):
        canonical = np.ascontiguousarray(np.transpose(array, (2, 1, 0))[:, ::-1, :])
        data = canonical.astype(np.float32 if folder == "imagesTr" else np.uint8)
        nib.save(nib.Nifti1Image(data, affine), source / folder / f"{name}{suffix}.nii.gz")


@pytest.fixture(scope="module")
def shipped_base():
    import msa_hf
    from msa_hf import SamAdapterModel

    return SamAdapterModel.from_pretrained(msa_hf.TINY_BASE).eval()


def test_evaluate_scores_one_click_propagated_through_each_volume(tmp_path, shipped_base, capsys):
    """The shipped base segments bright balls from one click each; evaluate's table scores the last round,
    its CSV every round, and the command line runs the protocol for a 2-D model when asked."""
    import msa_hf
    from msa_hf.cli import main as cli
    from msa_hf.data.prepare import prepare_dataset
    from msa_hf.evaluation.metrics.segmentation import dice
    from msa_hf.evaluation.protocols import evaluate_volumes
    from msa_hf.inference.volume_predictor import VolumePredictor
    from msa_hf.testing import sphere_volume

    rng = np.random.default_rng(0)
    volumes = {}
    for index, radius in enumerate((8.0, 10.0)):
        ball = sphere_volume(shape=(12, 48, 48), centre=(6, 22, 26), radius=radius)
        image = (np.where(ball, 700.0, 200.0) + rng.normal(0, 20, ball.shape)).astype(np.float32)
        ball_case(tmp_path / "source", f"ball{index}", image, ball.astype(np.uint8), 2.0)
        volumes[f"ball{index}"] = (image, ball)
    prepare_dataset(tmp_path / "source", tmp_path / "prepared", split=(0.0, 0.0, 1.0), modality="MR", keep_empty_slices=True)  # fmt: skip
    report = evaluate_volumes(
        shipped_base, tmp_path / "prepared", "test", protocols=["volume_propagation"], output_dir=tmp_path / "out"
    )  # fmt: skip
    scores = report["scores"]["volume_propagation"]
    assert sorted(s.case_id for s in scores) == ["ball0", "ball1"] and list(report["tables"]) == [
        "volume_propagation"
    ]
    for score in scores:  # the same rounds as the predictor gives the simulated user directly
        image, ball = volumes[score.case_id]
        predictor = VolumePredictor(shipped_base)
        predictor.set_volume(image, "MR")
        rounds = propagate_with_corrections(predictor, ball)
        assert score.dice_per_click == pytest.approx([dice(mask, ball) for mask in rounds])
        assert score.dice == pytest.approx(score.dice_per_click[-1]) and score.dice_per_click[0] > 0.9
    assert report["volume_propagation"]["dice_per_click"] == pytest.approx(
        np.mean([s.dice_per_click for s in scores], axis=0)
    )
    reached = [next((k + 1 for k, d in enumerate(s.dice_per_click) if d >= 0.9), 4) for s in scores]
    assert report["volume_propagation"]["clicks_to_0.90"] == pytest.approx(np.mean(reached))
    csv = (tmp_path / "out" / "cases_volume_propagation.csv").read_text()
    assert "ball0,class_1," in csv and len(csv.strip().splitlines()) == 3
    assert (
        "volume_propagation: one click propagated, then 2 corrections"
        in (tmp_path / "out" / "results.md").read_text()
    )

    arguments = ["evaluate", msa_hf.TINY_BASE, "--dataset", str(tmp_path / "prepared")]
    assert cli([*arguments, "--protocols", "volume_propagation", "--clicks", "1", "--batch-size", "4", "--output-dir", str(tmp_path / "cli")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "volume_propagation: Dice after the first click and each correction" in printed
    written = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert written["volume_propagation"]["corrections"] == 0
    first = np.mean([s.dice_per_click[0] for s in scores])
    assert written["volume_propagation"]["dice_per_click"] == pytest.approx([first])
    # both kinds in one run: one results.json and results.md, each protocol's CSV, the per-slice pictures
    from msa_hf.evaluation.protocols import evaluate_model

    mixed = tmp_path / "mixed"
    assert cli([*arguments, "--protocols", "points1", "volume_propagation", "--output-dir", str(mixed)]) == 0
    written = json.loads((mixed / "results.json").read_text())
    assert sorted(written["tables"]) == ["points1", "volume_propagation"]
    assert written["tables"]["volume_propagation"] == report["tables"]["volume_propagation"]
    per_slice = evaluate_model(shipped_base, tmp_path / "prepared", "test", ["points1"])
    assert written["tables"]["points1"] == per_slice["tables"]["points1"]
    assert written["volume_propagation"]["dice_per_click"] == pytest.approx(
        report["volume_propagation"]["dice_per_click"]
    )
    results = (mixed / "results.md").read_text()
    assert "points1: slice-prompted; volume_propagation: whole volumes" in results
    for name in ("cases_points1.csv", "cases_volume_propagation.csv", "overlays.png"):
        assert (mixed / name).is_file(), name


def test_propagation_on_a_thick_case_is_that_of_its_model_grid_version(tmp_path, shipped_base, monkeypatch):
    """4 mm slices for a model of 2 mm: every round's masks on the 4 mm case are those of its 2 mm version
    (images interpolated, each slice labelled as its nearest 4 mm slice) on every other slice."""
    from msa_hf.data.prepare import prepare_dataset
    from msa_hf.evaluation import volume_evaluation
    from msa_hf.evaluation.metrics.segmentation import dice
    from msa_hf.evaluation.protocols import evaluate_volumes
    from msa_hf.inference.slice_spacing import SliceResampling
    from msa_hf.testing import sphere_volume

    resampling = SliceResampling(8, 4.0, 2.0)
    ball = sphere_volume(shape=(8, 48, 48), centre=(3.5, 22, 26), radius=10.0)
    thick = (np.where(ball, 700.0, 200.0) + np.random.default_rng(1).normal(0, 20, ball.shape)).astype(
        np.float32
    )
    ball_case(tmp_path / "thick", "ball", thick, ball.astype(np.uint8), 4.0)
    fine_label = ball[resampling.nearest_input_slices()]
    ball_case(tmp_path / "fine", "ball", resampling.image_to_model(thick), fine_label.astype(np.uint8), 2.0)
    for grid in ("thick", "fine"):
        prepare_dataset(tmp_path / grid, tmp_path / f"{grid}_prepared", split=(0.0, 0.0, 1.0), modality="MR", keep_empty_slices=True)  # fmt: skip

    kept: list[np.ndarray] = []
    real = volume_evaluation.propagate_with_corrections

    def keeping(predictor, target, corrections=2, resampling=None):
        kept.append(real(predictor, target, corrections))  # the rounds on the model's grid
        return real(predictor, target, corrections, resampling=resampling)

    monkeypatch.setattr(volume_evaluation, "propagate_with_corrections", keeping)
    protocol = {"slice_spacing": 2.0, "protocols": ["volume_propagation"]}
    fine = evaluate_volumes(shipped_base, tmp_path / "fine_prepared", "test", **protocol)
    thick_report = evaluate_volumes(shipped_base, tmp_path / "thick_prepared", "test", **protocol)
    fine_rounds, thick_rounds = kept
    for fine_mask, thick_mask in zip(fine_rounds, thick_rounds, strict=True):  # both on the model's grid
        np.testing.assert_array_equal(fine_mask, thick_mask)
    assert fine_rounds[0].any()
    (score,) = thick_report["scores"]["volume_propagation"]

    # scored on the case's own slices: input slice i is model slice 2i
    assert score.dice_per_click == pytest.approx([dice(mask[::2], ball) for mask in fine_rounds])
    assert thick_report["resampled"] == {"ball": "8 slices at 4 mm resampled to 15 at the model's 2 mm"}
    assert fine["resampled"] == {}


def test_a_thin_case_comes_back_from_the_models_grid_as_predict_brings_a_propagation_back(shipped_base):
    """1 mm slices for a model of 2 mm: the simulated user clicks and corrects on the model's grid, and each
    round comes back on the case's own slices by predict's rule (the propagation's probabilities, the seed's
    own on its slice, interpolated and kept above one half), not by the masks alone."""
    from msa_hf.evaluation.metrics.segmentation import dice
    from msa_hf.inference.predictor import Prompt
    from msa_hf.inference.slice_spacing import SliceResampling
    from msa_hf.inference.volume_predictor import VolumePredictor
    from msa_hf.processing.prompts import most_interior_point
    from msa_hf.testing import sphere_volume

    resampling = SliceResampling(15, 1.0, 2.0)
    ball = sphere_volume(shape=(15, 48, 48), centre=(7, 22, 26), radius=9.0)
    image = (np.where(ball, 700.0, 200.0) + np.random.default_rng(2).normal(0, 20, ball.shape)).astype(
        np.float32
    )
    seen = ball[resampling.nearest_input_slices()]  # (8, 48, 48): what the model's slices show
    predictor = VolumePredictor(shipped_base)
    predictor.set_volume(resampling.image_to_model(image), "MR")
    rounds = propagate_with_corrections(predictor, seen, corrections=1, resampling=resampling)
    assert [mask.shape for mask in rounds] == [ball.shape] * 2

    seed_slice = int(np.argmax(seen.sum(axis=(1, 2))))
    seed = predictor.predict_masks(
        seed_slice, Prompt(points=[[float(v) for v in most_interior_point(seen[seed_slice])]])
    )
    walked = predictor.propagate_seeds(
        {seed_slice: seed.mask}, seed_logits={seed_slice: seed.low_res[seed.best]}, keep_probabilities=True
    )
    on_input = 2 * seed_slice  # the input slice at the seed's model slice
    assert resampling.to_model_slice(on_input) == seed_slice
    expected, _ = resampling.propagation_to_input(
        walked.probabilities, {on_input: (seed.probabilities_of(seed.best), seed.mask)}
    )
    np.testing.assert_array_equal(rounds[0], expected)
    assert dice(rounds[0], ball) > 0.8
    by_masks = resampling.probabilities_to_input(walked.masks.astype(np.float32)) > 0.5  # the masks' share
    assert (by_masks != rounds[0]).any()  # a rule this test tells apart
    with pytest.raises(ValueError, match="on the model's grid"):
        propagate_with_corrections(predictor, ball, resampling=resampling)
