"""The demo on ZeroGPU hardware: images encoded in a lent worker process, clicks decoded in the page's own, with
the same masks as on the CPU. The worker is `fake_zero_gpu`'s (forked, pickled across, kept between calls), on
the CPU: the path is the one a Space takes, with "cuda" replaced by "cpu"."""

from __future__ import annotations

import copy
import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fake_zero_gpu import FakeZeroGpu

from msa_hf import SamAdapterConfig, SamAdapterModel
from msa_hf.demo import zero_gpu as zero_gpu_module
from msa_hf.demo.prompt_state import empty_prompts
from msa_hf.demo.sessions import DemoSession, VolumeSession
from msa_hf.demo.zero_gpu import (
    GPU_SECONDS_PER_CALL,
    SLICES_PER_GPU_CALL,
    ZeroGpuPlacement,
    running_on_zero_gpu,
    zero_gpu_placement,
)
from msa_hf.inference.placement import resolve_placement
from msa_hf.testing import randomize_weights, tiny_sam_kwargs

pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed")


@pytest.fixture
def zero_gpu(monkeypatch):
    """This process as a Space on ZeroGPU hardware, with `FakeZeroGpu` as its `spaces` package."""
    fake = FakeZeroGpu()
    monkeypatch.setitem(sys.modules, "spaces", SimpleNamespace(GPU=fake.GPU))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(zero_gpu_module, "GPU_DEVICE", "cpu")  # no GPU here: the worker encodes on its CPU
    monkeypatch.setattr(zero_gpu_module, "_SERVED", {})
    monkeypatch.setattr(zero_gpu_module, "_encode_on_lent_gpu", None)
    yield fake
    fake.close()


def _msa_model(**options) -> SamAdapterModel:
    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs(), **options)).eval()
    randomize_weights(model, seed=0, std=0.1)
    return model


def _agree(found, expected) -> None:
    np.testing.assert_allclose(found.probabilities, expected.probabilities, atol=1e-5)
    assert (found.mask == expected.mask).mean() > 0.999 and found.mask.any()


def test_a_picture_is_encoded_in_the_lent_worker_and_its_clicks_decoded_here(zero_gpu):
    model = _msa_model()
    reference = DemoSession(copy.deepcopy(model), device="cpu")
    session = DemoSession(model, device=zero_gpu_placement(model, "float32"))
    assert isinstance(session.predictor.placement, ZeroGpuPlacement)
    assert session.predictor.placement.device.type == "cpu"  # where the page decodes and keeps embeddings
    image = np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)
    session.prepare(image)  # on upload
    assert len(zero_gpu.calls) == 1 and zero_gpu.calls[0]["pid"] != os.getpid()
    assert zero_gpu.calls[0]["seconds"] == GPU_SECONDS_PER_CALL + 1  # one picture: half a second, rounded up
    for points, box in [([[20, 12, 1]], None), ([[20, 12, 1], [5, 30, 0]], None), ([], [5, 5, 30, 25])]:
        _agree(session.segment_masks(image, points, box), reference.segment_masks(image, points, box))
    assert len(zero_gpu.calls) == 1  # the clicks asked for no GPU: decoded here, from the embedding sent back
    # by default the lent GPU encodes in bfloat16: the float32 masks within its tolerance
    lent = DemoSession(model, device=zero_gpu_placement(model))
    assert lent.predictor.placement.gpu_dtype == torch.bfloat16
    agree = (lent.segment(image, [], [5, 5, 30, 25]) == reference.segment(image, [], [5, 5, 30, 25])).mean()
    assert agree > 0.97 and len(zero_gpu.calls) == 2


def test_a_volume_is_encoded_in_a_few_gpu_calls_and_propagates_as_on_the_cpu(zero_gpu, tmp_path):
    import nibabel as nib

    model = _msa_model(use_depth_branch=True, num_slices=4)
    data = np.random.default_rng(1).normal(100, 5, (24, 24, 40)).astype(np.float32)
    data[6:18, 6:18, 10:30] += 80  # a bright block through the middle slices
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "volume.nii.gz")
    reference = VolumeSession(
        str(tmp_path / "volume.nii.gz"), DemoSession(copy.deepcopy(model), device="cpu")
    )
    volume = VolumeSession(
        str(tmp_path / "volume.nii.gz"), DemoSession(model, device=zero_gpu_placement(model, "float32"))
    )
    assert reference.predictor.batch_size == 4 and volume.predictor.batch_size == SLICES_PER_GPU_CALL
    for session in (reference, volume):
        session.set_prompts(20, {**empty_prompts(), "box": [6, 6, 17, 17]})
        session.propagate(20, stop_score=0.0)
        session.prepare(39)  # every slice encoded
    assert (volume.masks == reference.masks).mean() > 0.999 and volume.masks[20].any()
    _agree(volume.segmentations[20], reference.segmentations[20])
    # 40 slices in two calls of whole depth windows, each call's duration asked by its slices
    sent = sorted(
        (len(call["arguments"][2]), call["arguments"][3], call["seconds"]) for call in zero_gpu.calls
    )
    assert sent == [
        (8, {"num_slices": 4}, GPU_SECONDS_PER_CALL + 4),
        (32, {"num_slices": 4}, GPU_SECONDS_PER_CALL + 16),
    ]


def test_the_task_adapter_chosen_after_the_worker_started_is_the_one_it_encodes_with(zero_gpu, tmp_path):
    from peft import PeftModel

    from msa_hf.hub.task_adapters import load_task_adapters
    from msa_hf.inference.predictor import Prompt, SegmentationPredictor
    from msa_hf.testing import fresh_sam, saved_msa_adapter

    saved_msa_adapter(tmp_path / "liver", seed=1)
    saved_msa_adapter(tmp_path / "kidney", seed=2)
    model = load_task_adapters(
        fresh_sam(), {"liver": str(tmp_path / "liver"), "kidney": str(tmp_path / "kidney")}
    )
    session = DemoSession(model, device=zero_gpu_placement(model, "float32"))
    rng = np.random.default_rng(0)
    # the worker is forked at the first call and kept: the later adapter choices are made after its fork
    for name in ("kidney", "liver", "kidney", "liver"):
        image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)  # a new picture: encoded in the worker
        mask = session.segment(image, [[30, 30, 1], [10, 50, 0]], None, adapter=name)
        reference = SegmentationPredictor(PeftModel.from_pretrained(fresh_sam(), tmp_path / name))
        reference.set_image(image)
        expected, _ = reference.predict(Prompt(points=[[30, 30], [10, 50]], labels=[1, 0]))
        assert (mask > 0).any() and ((mask > 0) == expected).mean() > 0.999, name
    assert len({call["pid"] for call in zero_gpu.calls}) == 1 and len(zero_gpu.calls) == 4


def test_a_model_not_registered_for_zero_gpu_is_refused(zero_gpu):
    served, other = _msa_model(), _msa_model()
    placement = zero_gpu_placement(served, "float32")
    with pytest.raises(RuntimeError, match="not registered for ZeroGPU"):
        placement.encode(other, torch.zeros(1, 3, 64, 64))
    assert resolve_placement(placement) is placement  # a placement chosen already passes through
    with pytest.raises(ValueError, match="has its own dtype"):
        resolve_placement(placement, "bfloat16")


def test_serve_on_zero_gpu_hardware_lends_the_gpu_to_the_encoder(zero_gpu, tiny_base, monkeypatch):
    from msa_hf.demo import app

    served = []
    monkeypatch.setattr(
        app, "build_demo", lambda model, **options: SimpleNamespace(launch=lambda **_: served.append(options))
    )
    # serve tunes its own process's settings (the demo's volume limit, analytics off): set here, restored after
    monkeypatch.setenv("MSA_HF_MAX_VOXELS", "1000000")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    for variable in ("MSA_DEVICE", "MSA_DTYPE"):
        monkeypatch.delenv(variable, raising=False)
    assert running_on_zero_gpu()
    app.serve(model=str(tiny_base))
    placement = served[-1]["device"]
    assert isinstance(placement, ZeroGpuPlacement) and served[-1]["dtype"] is None
    assert placement.device.type == "cpu" and placement.gpu_dtype == torch.bfloat16
    assert zero_gpu.calls == []  # nothing encoded before a visitor uploads
    monkeypatch.setenv("MSA_DTYPE", "float32")  # the Space's variable: the lent GPU's precision
    app.serve(model=str(tiny_base))
    assert served[-1]["device"].gpu_dtype == torch.float32
    monkeypatch.setenv("MSA_DEVICE", "cpu")  # the CPU alone, on any hardware
    app.serve(model=str(tiny_base))
    assert served[-1]["device"] == "cpu"
    monkeypatch.delenv("MSA_DEVICE")
    monkeypatch.setitem(sys.modules, "spaces", None)  # ZeroGPU hardware without its package
    with pytest.raises(RuntimeError, match="add `spaces` to the Space's requirements.txt"):
        app.serve(model=str(tiny_base))
    monkeypatch.setenv("SPACES_ZERO_GPU", "false")
    assert not running_on_zero_gpu()


def test_the_page_on_zero_gpu_answers_its_api_as_the_cpu_page_does(zero_gpu, tmp_path):
    """The whole page around the ZeroGPU placement: `/segment` through gradio_client, its GPU call made from
    the request's thread."""
    import json

    from gradio_client import Client, handle_file
    from PIL import Image

    from msa_hf.demo import app

    model = _msa_model()
    image = np.random.default_rng(3).integers(0, 255, (48, 56), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "slice.png")
    masks = {}
    for name, device in (("cpu", "cpu"), ("zero", zero_gpu_placement(model, "float32"))):
        demo = app.build_demo(model if name == "zero" else copy.deepcopy(model), device=device)
        demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
        try:
            result = Client(demo.local_url, verbose=False).predict(
                handle_file(str(tmp_path / "slice.png")),
                json.dumps([[20, 24, 1]]),
                "",
                "",
                api_name="/segment",
            )
            masks[name] = np.asarray(Image.open(result))
        finally:
            demo.close()
    assert (masks["zero"] == masks["cpu"]).mean() > 0.999 and masks["zero"].any()
    assert len(zero_gpu.calls) == 1 and zero_gpu.calls[0]["pid"] != os.getpid()
