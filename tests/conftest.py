"""Shared fixtures: tiny SAM geometries with randomised base weights (see msa_hf/testing.py for why)."""

from __future__ import annotations

import pytest
import torch
from transformers import SamConfig, SamModel

from msa_hf import SamAdapterConfig, SamAdapterModel
from msa_hf.testing import randomize_weights, tiny_sam_kwargs

torch.set_flush_denormal(True)


@pytest.fixture
def sam_model() -> SamModel:
    model = SamModel(SamConfig(**tiny_sam_kwargs())).eval()
    randomize_weights(model, seed=0)
    return model


def make_msa(sam: SamModel | None = None, **adapter_kwargs) -> SamAdapterModel:
    """A tiny `SamAdapterModel` holding `sam`'s weights (adapters at their zero-output init)."""
    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs(), **adapter_kwargs)).eval()
    if sam is not None:
        missing, unexpected = model.load_state_dict(sam.state_dict(), strict=False)
        assert not unexpected and all("_adapter." in k for k in missing)
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
