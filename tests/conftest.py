"""Shared fixtures: tiny SAM geometries with randomised base weights (see msa_hf/testing.py for why)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import SamConfig, SamModel

from msa_hf import SamAdapterModel
from msa_hf.data import prepare_dataset
from msa_hf.testing import randomize_weights, tiny_sam_kwargs

torch.set_flush_denormal(True)


@pytest.fixture
def sam_model() -> SamModel:
    model = SamModel(SamConfig(**tiny_sam_kwargs())).eval()
    randomize_weights(model, seed=0)
    return model


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def point_prompts() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    points = torch.rand(4, 1, 2, 2, generator=generator) * 63
    labels = torch.tensor([[[1, 0]]] * 4)
    return points, labels


# Shared by the training, hub and demo tests: a saved tiny SAM base and a small prepared 2-D dataset.
@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("base")
    model = SamModel(SamConfig(**tiny_sam_kwargs()))
    randomize_weights(model, seed=0, std=0.1)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def disk_dataset(tmp_path_factory) -> Path:
    """Twelve 2-D cases: bright disks (class 1) and squares (class 2) on noise."""
    source = tmp_path_factory.mktemp("disks")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48]
    for index in range(12):
        image = rng.integers(0, 60, (48, 48)).astype(np.uint8)
        label = np.zeros((48, 48), np.uint8)
        cy, cx, r = rng.integers(12, 36), rng.integers(12, 36), rng.integers(5, 10)
        label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = 1
        sy, sx = rng.integers(2, 10), rng.integers(30, 40)
        label[sy : sy + 6, sx : sx + 6] = 2
        image[label > 0] = 200
        Image.fromarray(image).save(source / f"case{index:02d}.png")
        Image.fromarray(label).save(source / f"case{index:02d}_mask.png")
    (source / "labels.txt").write_text("1 disk\n2 square\n")
    output = tmp_path_factory.mktemp("prepared") / "disks"
    prepare_dataset(source, output, split=(0.5, 0.25, 0.25))
    return output


@pytest.fixture()
def fallback_pair(tiny_base) -> tuple[SamAdapterModel, SamModel]:
    """A tiny MSA model whose trainable parts moved away from the base, with the base kept for fallback
    (`keep_base_decoder`), and the base itself."""
    base = SamModel.from_pretrained(tiny_base).eval()
    model = SamAdapterModel.from_pretrained(tiny_base).mark_only_adapters_as_trainable().keep_base_decoder()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model.eval(), base


@pytest.fixture
def block_series(tmp_path) -> Path:
    """A CT series in `tmp_path/series`: six slices of 20 x 24 pixels of air, a block of soft tissue (60 HU)
    on slices 1-4, rows 3-15, columns 2-19."""
    from msa_hf.testing import write_dicom_series

    volume = np.full((6, 20, 24), -1000.0, np.float32)
    volume[1:5, 3:16, 2:20] = 60.0
    write_dicom_series(tmp_path / "series", volume)
    return tmp_path / "series"


@pytest.fixture
def serve_stand_in(monkeypatch):
    """`serve_stand_in(model, channel=None)`: the commands' `MODEL` (any name) served by `model`, a stand-in with
    known masks (`msa_hf.testing.BoxFillSam`), with a processor of no window, slice spacing or planes, trained on
    `channel` (a `ChannelChoice` of origin "the model") of multi-channel cases."""
    from types import SimpleNamespace

    import msa_hf.inference.loading as loading

    def serve(model, channel=None) -> None:
        processor = SimpleNamespace(
            window=None, slice_spacing=None, planes=None, channel_choice=lambda: channel
        )
        monkeypatch.setattr(loading, "load_for_inference", lambda _: (model, processor))

    return serve
