"""--device / --dtype: the same code path on every device; a bf16 encoder agrees with float32."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch_support import needs_compiling_torch

from msa_hf import SamAdapterConfig, SamAdapterModel
from msa_hf.inference.placement import resolve_placement
from msa_hf.inference.predictor import Prompt, SegmentationPredictor
from msa_hf.testing import randomize_weights, tiny_sam_kwargs


def test_defaults_and_bad_values():
    placement = resolve_placement()
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert placement.device.type == expected
    assert placement.dtype == (torch.bfloat16 if expected == "cuda" else torch.float32)
    assert resolve_placement("cpu", "bf16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype 'int8'"):
        resolve_placement("cpu", "int8")
    with pytest.raises(ValueError, match="float16 on the CPU"):
        resolve_placement("cpu", "float16")
    with pytest.raises(ValueError, match="device 'gpu0'"):
        resolve_placement("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU; use --device cpu"):
            resolve_placement("cuda")
    for other in ("mps", "xpu"):  # another accelerator: taken where this torch has it, else refused by name
        backend = getattr(torch, other, None) or getattr(torch.backends, other, None)
        if backend is not None and backend.is_available():
            assert resolve_placement(other).device.type == other
        else:
            with pytest.raises(ValueError, match=f"device {other}: this Python's torch cannot use it"):
                resolve_placement(other)


def test_a_gpu_number_beyond_the_machine_s_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_placement("cuda:1").device == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"device cuda:2: this machine has 2 CUDA GPUs \(cuda:0 to cuda:1\)"):
        resolve_placement("cuda:2")


def test_a_cpu_that_computes_bfloat16_natively_is_told_of_it(monkeypatch, tmp_path, capsys):
    """The tip is said where float32 was taken by default on a CPU with bfloat16 hardware for an encoder wide
    enough for bfloat16 to pay (ViT-B's 768 and up), and only there; the hardware is read from torch's CPU
    probes (AMX tiles, AVX512-BF16)."""
    from types import SimpleNamespace

    from msa_hf.cli import main
    from msa_hf.inference import placement

    def model(width):
        return SimpleNamespace(config=SimpleNamespace(vision_config=SimpleNamespace(hidden_size=width)))

    vit_b, small = model(768), model(64)
    for amx, avx512_bf16, native in ((True, False, True), (False, True, True), (False, False, False)):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda on=avx512_bf16: on)
        assert placement.native_bfloat16_cpu() is native
        assert (placement.cpu_precision_tip("cpu", None, vit_b) is not None) is native
        assert placement.cpu_precision_tip("cpu", None, small) is None  # slower in bfloat16
        assert placement.cpu_precision_tip("cpu", "float32", vit_b) is None  # chosen: nothing to say
        assert placement.cpu_precision_tip("cpu", "bfloat16", vit_b) is None

    def broken():
        raise RuntimeError("no CPU probes in this build")

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", broken)
    assert placement.native_bfloat16_cpu() is False
    # said once by a command that encodes on the CPU by default, after the model loads (its width decides)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    from PIL import Image

    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "scan.png")
    arguments = [
        "predict",
        "tiny",
        str(tmp_path / "scan.png"),
        str(tmp_path / "mask.png"),
        "--box",
        "2",
        "2",
        "9",
        "9",
    ]
    assert main([*arguments, "--device", "cpu"]) == 0
    assert "bfloat16" not in capsys.readouterr().err  # the tiny base: float32 is the faster
    monkeypatch.setattr(placement, "BFLOAT16_PAYS_FROM_WIDTH", 1)  # as if it were wide
    assert main([*arguments[:3], str(tmp_path / "mask1.png"), *arguments[4:], "--device", "cpu"]) == 0
    assert capsys.readouterr().err.count("--dtype bfloat16 encodes images about 2x faster") == 1
    assert (
        main(
            [
                *arguments[:3],
                str(tmp_path / "mask2.png"),
                *arguments[4:],
                "--device",
                "cpu",
                "--dtype",
                "float32",
            ]
        )
        == 0
    )
    assert "bfloat16" not in capsys.readouterr().err


def test_a_bfloat16_encoder_gives_the_float32_masks_within_its_tolerance(tiny_base):
    from msa_hf import SamAdapterModel

    model = SamAdapterModel.from_pretrained(tiny_base)
    randomize_weights(model, seed=4, std=0.05)
    image = np.random.default_rng(0).integers(0, 255, (50, 60)).astype(np.uint8)
    image[10:30, 15:40] = 220
    prompts = [Prompt(box=[15, 10, 39, 29]), Prompt(points=[[25, 20]], labels=[1])]
    results = {}
    for dtype in ("float32", "bfloat16"):
        predictor = SegmentationPredictor(model, device="cpu", dtype=dtype)
        predictor.set_image(image)
        results[dtype] = (predictor._embedding.clone(), [predictor.predict(p) for p in prompts])
    (reference, exact), (embedding, approximate) = results["float32"], results["bfloat16"]
    assert embedding.dtype == torch.float32  # the decoder runs in float32 on every device
    assert not torch.equal(embedding, reference)  # autocast really ran
    torch.testing.assert_close(embedding, reference, atol=0.05, rtol=0.05)
    for (mask, score), (mask16, score16) in zip(exact, approximate, strict=True):
        assert mask.shape == mask16.shape == (50, 60)
        assert (mask == mask16).mean() > 0.98
        assert abs(score - score16) < 0.05


def test_evaluation_in_bfloat16_matches_float32_to_bf16_tolerance(tiny_base, disk_dataset):
    from msa_hf import SamAdapterModel
    from msa_hf.evaluation.protocols import evaluate_model

    model = SamAdapterModel.from_pretrained(tiny_base)
    tables = {
        dtype: evaluate_model(model, disk_dataset, "test", ("box", "points1"), device="cpu", dtype=dtype,
                              batch_size=3)["tables"]
        for dtype in ("float32", "bfloat16")
    }  # fmt: skip
    for protocol, table in tables["float32"].items():
        for name, row in table.items():
            assert abs(row["dice"] - tables["bfloat16"][protocol][name]["dice"]) < 0.03


def test_the_encoder_compiles_by_default_only_where_it_pays(monkeypatch):
    from msa_hf.inference.placement import COMPILE_PAYS_FROM_IMAGES, Placement, compile_by_default

    monkeypatch.setattr(torch, "__version__", "2.11.0+cu128")  # a torch that compiles the encoder

    gpu, cpu = Placement(torch.device("cuda"), torch.bfloat16), Placement(torch.device("cpu"), torch.float32)
    assert compile_by_default(None, gpu, lambda: COMPILE_PAYS_FROM_IMAGES)
    assert not compile_by_default(
        None, gpu, lambda: COMPILE_PAYS_FROM_IMAGES - 1
    )  # the compilation is not repaid
    counted = []

    def count() -> int:
        counted.append(1)
        return 10**6

    assert not compile_by_default(None, cpu, count)
    assert compile_by_default(True, cpu, count) and not compile_by_default(
        False, gpu, count
    )  # the user's word
    assert counted == []  # the images (a batch job's headers) are counted only when the count decides


@pytest.mark.parametrize("version", ["2.5.1+cu124", "2.6.0", "2.7.0a0+git1234", "2.7.1+cpu", "2.13.0"])
def test_a_torch_that_cannot_compile_the_encoder_never_compiles_and_refuses_when_asked(
    version, monkeypatch, capsys
):
    from msa_hf.inference.placement import Placement, compile_by_default, compile_image_encoder
    from msa_hf.training.config import TrainConfig

    monkeypatch.setattr(torch, "__version__", version)
    gpu = Placement(torch.device("cuda"), torch.bfloat16)
    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs()))
    if version.startswith(("2.5", "2.6")):
        assert not compile_by_default(None, gpu, lambda: 10**6)  # a large GPU job stays eager, and says why
        assert f"needs torch 2.7 or newer (this is torch {version})" in capsys.readouterr().err
        assert not compile_by_default(None, gpu, lambda: 10) and not capsys.readouterr().err  # would not pay
        assert compile_by_default(True, gpu, lambda: 1)  # the user's word; refused where it compiles:
        for refused in (
            lambda: SegmentationPredictor(model, compile_encoder=True, device="cpu"),
            lambda: compile_image_encoder(model),
            lambda: TrainConfig(compile=True),
        ):
            with pytest.raises(
                ValueError, match=f"needs torch 2.7 or newer; this is torch {re.escape(version)}"
            ):
                refused()
        assert model.vision_encoder._compiled_call_impl is None  # refused before anything was compiled
    else:
        assert compile_by_default(None, gpu, lambda: 10**6) and compile_by_default(True, gpu, lambda: 1)
        assert not capsys.readouterr().err
        assert TrainConfig(compile=True).compile


@pytest.mark.parametrize("requested", [None, True, False])
def test_evaluation_and_batch_prediction_count_their_images_for_the_compile_decision(
    requested, tiny_base, disk_dataset, tmp_path, monkeypatch
):
    from PIL import Image

    from msa_hf import SamAdapterModel
    from msa_hf.evaluation import protocols
    from msa_hf.inference import batch, predictor
    from msa_hf.inference.batch import BatchItem, predict_batch

    asked, compiled = [], []

    def decide(requested_value, placement, count_images):
        asked.append((requested_value, count_images()))
        return bool(requested_value)

    for module in (protocols, batch):
        monkeypatch.setattr(module, "compile_by_default", decide, raising=False)
    for module in (protocols, predictor):
        monkeypatch.setattr(module, "compile_image_encoder", lambda model: compiled.append(model))
    model = SamAdapterModel.from_pretrained(tiny_base)
    report = protocols.evaluate_model(model, disk_dataset, "test", ("box",), compile_encoder=requested)
    picture = np.full((20, 30), 50, np.uint8)
    items = []
    for index in range(3):
        Image.fromarray(picture).save(tmp_path / f"case{index}.png")
        items.append(BatchItem(tmp_path / f"case{index}.png", tmp_path / "out" / f"case{index}.png",
                               [Prompt(box=[2, 2, 20, 15])]))  # fmt: skip
    predict_batch(model, items, device="cpu", show_progress=False, compile_encoder=requested)
    assert asked == [(requested, report["rows"]), (requested, 3)]  # one image per row, per picture
    assert compiled == ([model, model] if requested else [])


@needs_compiling_torch
def test_the_reason_a_compilation_failed_is_found_where_the_build_tools_are_the_cause():
    """A compiler's error (wrapped by inductor and dynamo, as they raise it), a missing compiler and Triton's
    failing launcher build are the machine's; anything else is not, and is left to be seen."""
    import subprocess

    from torch._inductor import exc

    from msa_hf.inference.placement import compile_toolchain_failure

    output = "In file included from Python.h:14,\n/usr/include/python3.14/pyconfig.h:3:12: fatal error: x.h: No such file"
    compiler_failed = exc.CppCompileError(["g++", "kernel.cpp"], output)
    assert compile_toolchain_failure(exc.InductorError(compiler_failed, None)) == (
        "/usr/include/python3.14/pyconfig.h:3:12: fatal error: x.h: No such file"
    )
    assert "No working C++ compiler" in compile_toolchain_failure(exc.InvalidCxxCompiler())
    try:  # raised while another was being handled, as Triton's build inside a compiled call is
        try:
            raise RuntimeError("compiling the launcher")
        except RuntimeError:
            raise subprocess.CalledProcessError(1, ["/usr/bin/gcc", "cuda_utils.c"]) from None
    except subprocess.CalledProcessError as launcher_failed:
        assert compile_toolchain_failure(RuntimeError("kernel")) is None
        wrapped = RuntimeError("first call")
        wrapped.__cause__ = launcher_failed
        assert compile_toolchain_failure(wrapped) == "/usr/bin/gcc failed"
    assert compile_toolchain_failure(exc.InductorError(NotImplementedError("an op"), None)) is None


@pytest.mark.slow  # about 40 s: inductor lowers the whole model, forward and backward, until it fails
@needs_compiling_torch
def test_a_machine_that_cannot_build_kernels_runs_the_compiled_module_uncompiled_with_the_same_results(
    capsys,
):
    """No C++ compiler (a Python without its headers fails the same way, later): the first call says why and
    how to compile, and every call gives the plain module's outputs and gradients, for the image encoder of
    inference and for the whole model of training."""
    import sys

    import torch._inductor.config as inductor_config

    from msa_hf.inference.placement import compile_image_encoder, compile_in_place

    # no compiler; and no cached kernels, which would hide it
    with inductor_config.patch({"cpp.cxx": ("/nonexistent/g++",), "fx_graph_cache": False}):
        torch.manual_seed(0)
        model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs()))
        randomize_weights(model)
        model.eval()
        pixels = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            plain = model.get_image_embeddings(pixels)
        compile_image_encoder(model)
        with torch.no_grad():
            first, second = model.get_image_embeddings(pixels), model.get_image_embeddings(pixels)
        torch.testing.assert_close(first, plain, atol=0, rtol=0)
        torch.testing.assert_close(second, plain, atol=0, rtol=0)
        said = capsys.readouterr().err
        python = f"python{sys.version_info.major}.{sys.version_info.minor}"
        assert said.count("torch.compile could not build the image encoder's kernels") == 1
        assert "No working C++ compiler" in said and f"apt install g++ {python}-dev" in said
        assert model.vision_encoder._compiled_call_impl is None  # uncompiled from then on

        trained = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs()))
        randomize_weights(trained)
        boxes = torch.tensor([[[8.0, 8.0, 40.0, 50.0]], [[2.0, 10.0, 60.0, 30.0]]])
        gradients = []
        for compiled in (False, True):
            trained.zero_grad()
            if compiled:
                compile_in_place(trained, "the model")
            masks = trained(pixel_values=pixels, input_boxes=boxes, multimask_output=False).pred_masks
            masks.square().mean().backward()
            gradients.append({n: p.grad.clone() for n, p in trained.named_parameters() if p.grad is not None})
        assert gradients[0] and gradients[0].keys() == gradients[1].keys()
        for name, gradient in gradients[0].items():
            torch.testing.assert_close(gradients[1][name], gradient, atol=0, rtol=0, msg=name)
        assert "torch.compile could not build the model's kernels" in capsys.readouterr().err


@needs_compiling_torch
def test_a_compilation_that_fails_for_another_reason_is_not_hidden():
    from msa_hf.inference.placement import compile_in_place

    class Refuses(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("not a build tool's fault")

    module = Refuses()
    compile_in_place(module, "the module")
    with pytest.raises(ValueError, match="not a build tool's fault"):
        module(torch.ones(2))
