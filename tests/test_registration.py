"""`import msa_hf` is cheap and still registers with transformers and peft, in whatever order they load."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from msa_hf import SamAdapterConfig, SamAdapterModel
from msa_hf.testing import randomize_weights, tiny_sam_kwargs


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_the_command_line_help_loads_no_framework():
    loaded = _run(
        "import sys, msa_hf.cli\n"
        "msa_hf.cli.build_parser().format_help()\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'datasets') if m in sys.modules))"
    )
    assert loaded == "[]"


@pytest.mark.parametrize(
    "imports",
    [
        "import msa_hf\nimport peft\nimport transformers",
        "import peft\nimport msa_hf",
        "import transformers\nimport msa_hf",
    ],
)
def test_registration_in_any_import_order(imports):
    code = imports + (
        "\nfrom peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING\n"
        "from transformers import AutoConfig, AutoModel, AutoModelForMaskGeneration\n"
        "from transformers.models.auto.modeling_auto import MODEL_FOR_MASK_GENERATION_MAPPING, MODEL_MAPPING\n"
        "config = AutoConfig.for_model('sam_adapter')\n"
        "print('MSA' in PEFT_TYPE_TO_CONFIG_MAPPING, type(config).__name__,\n"
        "      MODEL_MAPPING[type(config)].__name__, MODEL_FOR_MASK_GENERATION_MAPPING[type(config)].__name__)"
    )
    assert _run(code) == "True SamAdapterConfig SamAdapterModel SamAdapterModel"


def test_mask_generation_pipeline_loads_an_msa_model(tmp_path):
    from transformers import pipeline

    from msa_hf.processing.processor import MsaProcessor

    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs())).eval()
    randomize_weights(model, seed=3, include_adapters=True)
    model.save_pretrained(tmp_path)
    MsaProcessor.for_model(model).save_pretrained(tmp_path)
    generator = pipeline("mask-generation", model=str(tmp_path), device="cpu")
    assert isinstance(generator.model, SamAdapterModel)
    for name, tensor in model.state_dict().items():
        assert torch.equal(generator.model.state_dict()[name], tensor), name
    # transformers' automatic mask generation de-duplicates masks with torchvision's NMS
    pytest.importorskip("torchvision", reason="the pipeline's post-processing needs torchvision")
    from PIL import Image
    from transformers import SamModel

    from msa_hf.modeling.adapter_layers import adapters_disabled

    # with its adapters off the MSA model is SAM on the same weights, so the pipeline must find the same masks
    # with either; no mask is filtered out by score (random weights)
    sam = SamModel(generator.model.config)
    missing, _ = sam.load_state_dict(generator.model.state_dict(), strict=False)  # the adapters are extra
    assert not missing
    stock = pipeline(
        "mask-generation", model=sam.eval(), image_processor=generator.image_processor, device="cpu"
    )
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8))
    options = dict(points_per_batch=16, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    with adapters_disabled(generator.model):
        ours = generator(image, **options)["masks"]
    theirs = stock(image, **options)["masks"]
    assert len(ours) > 0 and len(ours) == len(theirs)
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
