"""MsaProcessor: a model is served with the intensity mapping it was trained with."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from msa_hf.data import prepare_dataset
from msa_hf.data.transforms import CT_WINDOW_PRESETS, WindowIntensity
from msa_hf.processing.processor import MSA_SECTION, MsaProcessor
from msa_hf.testing import write_nifti_case
from msa_hf.training.config import TrainConfig
from msa_hf.training.job import run_training

LUNG = (CT_WINDOW_PRESETS["lung"][0] - CT_WINDOW_PRESETS["lung"][1] / 2,
        CT_WINDOW_PRESETS["lung"][0] + CT_WINDOW_PRESETS["lung"][1] / 2)  # fmt: skip


@pytest.fixture
def windows_used(monkeypatch) -> list[tuple[float, float]]:
    """The HU bounds of every CT window applied from now on, by any code path."""
    seen: list[tuple[float, float]] = []
    original = WindowIntensity.__call__

    def spy(self, image):
        seen.append(self.bounds)
        return original(self, image)

    monkeypatch.setattr(WindowIntensity, "__call__", spy)
    return seen


@pytest.fixture(scope="module")
def ct_dataset(tmp_path_factory):
    source = tmp_path_factory.mktemp("ct")
    for index in range(4):
        write_nifti_case(source, f"case_{index}", shape=(32, 32, 10), seed=index)
    (source / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "a", "2": "b"}}))
    output = tmp_path_factory.mktemp("prepared") / "ct"
    prepare_dataset(source, output, split=(0.5, 0.25, 0.25))
    return source, output


def test_a_lung_window_run_is_evaluated_predicted_and_served_with_the_lung_window(
    tiny_base, ct_dataset, tmp_path, windows_used, monkeypatch
):

    from msa_hf.cli import main as cli

    source, dataset = ct_dataset
    config = TrainConfig(
        base=str(tiny_base), dataset=str(dataset), output_dir=str(tmp_path / "run"), steps=2, batch_size=2,
        eval_every=2, checkpoint_every=2, warmup_steps=1, log_with="none", window="lung",
    )  # fmt: skip
    run_training(config)  # trains, validates and scores the test split
    model_dir = tmp_path / "run" / "model"
    assert MsaProcessor.from_pretrained(model_dir).window == "lung"
    assert windows_used and set(windows_used) == {LUNG}

    windows_used.clear()
    assert cli(["evaluate", str(model_dir), "--dataset", str(dataset), "--protocols", "box"]) == 0
    assert windows_used and set(windows_used) == {LUNG}

    windows_used.clear()
    output = tmp_path / "mask.nii.gz"
    image = source / "imagesTr" / "case_0_0000.nii.gz"
    assert (
        cli(
            [
                "predict",
                str(model_dir),
                str(image),
                str(output),
                "--slice",
                "4",
                "--box",
                "5",
                "5",
                "20",
                "20",
            ]
        )
        == 0
    )
    assert windows_used and set(windows_used) == {LUNG}

    import msa_hf.demo.app as app
    from msa_hf.demo.sessions import DemoSession
    from msa_hf.demo.uploads import display_image

    monkeypatch.setenv("MSA_MODEL", str(model_dir))
    model, processor = app.load_served()
    windows_used.clear()
    session = DemoSession(model, window=processor.window)
    hu = np.random.default_rng(0).integers(-1000, 1000, (40, 40)).astype(np.float32)
    session.prepare(hu, "CT")
    shown = display_image(hu, "CT", session.window)
    assert windows_used and set(windows_used) == {LUNG}
    assert not np.array_equal(shown, display_image(hu, "CT"))  # the abdomen default shows another picture


def test_an_old_model_folder_loads_with_the_defaults_and_says_so_once(tiny_base, tmp_path, caplog):
    from transformers import SamModel

    model = SamModel.from_pretrained(tiny_base)
    MsaProcessor(64, 32, window="lung").save_pretrained(tmp_path / "new")
    saved = json.loads((tmp_path / "new" / "processor_config.json").read_text())
    assert saved[MSA_SECTION]["window"] == "lung"
    # transformers' own SamProcessor still reads the file
    from transformers import SamProcessor

    assert SamProcessor.from_pretrained(tmp_path / "new").image_processor.size["longest_edge"] == 64

    old = tmp_path / "old"
    old.mkdir()
    del saved[MSA_SECTION]
    (old / "processor_config.json").write_text(json.dumps(saved))
    with caplog.at_level(logging.WARNING, logger="msa_hf.processing.processor"):
        first = MsaProcessor.from_pretrained(old, model)
        second = MsaProcessor.from_pretrained(old, model)
    assert first == second == MsaProcessor.for_model(model)
    assert first.window is None
    assert sum("no saved intensity settings" in r.message for r in caplog.records) == 1
    # a folder with no processor at all: the model's geometry
    assert (
        MsaProcessor.from_pretrained(tmp_path / "none", model).image_size
        == model.config.vision_config.image_size
    )


def test_bad_windows_are_refused_by_name():
    with pytest.raises(ValueError, match="window='lungs'"):
        MsaProcessor(64, 32, "lungs")
    with pytest.raises(ValueError, match="low < high"):
        MsaProcessor(64, 32, (100.0, -100.0))
    assert MsaProcessor(64, 32, [-100, 100]).window == (-100.0, 100.0)
