"""Self-supervised encoder pretraining: objectives learn on real MRI slices, token edits are what the config
says, and the pretrained checkpoint loads with only the expected weights changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from msa_hf import SamAdapterConfig, SamAdapterModel
from msa_hf.encoder_pretraining import (
    EncoderPretrainingConfig,
    ShuffledEmbeddingDetection,
    UnlabelledImages,
    build_objectives,
    encode_tokens,
    mark_trainable,
    pretrain_encoder,
    random_token_choice,
)
from msa_hf.inference.image_encoding import image_to_pixel_values
from msa_hf.testing import randomize_weights, tiny_sam_kwargs


@pytest.fixture(scope="module")
def mri_folder(tmp_path_factory):
    """Eight axial slices of the MNI152 T1 template (a real MRI) as 8-bit PNGs: an unlabelled image folder."""
    from msa_hf.data import axial_slices
    from msa_hf.data.default_dataset import mni152_tissue_volumes

    image, _, _ = mni152_tissue_volumes()
    folder = tmp_path_factory.mktemp("mri")
    slices = axial_slices(image)
    for index in range(8):
        Image.fromarray(slices[60 + 8 * index]).save(folder / f"slice{index}.png")
    return folder


def tiny_model(seed: int = 0) -> SamAdapterModel:
    torch.manual_seed(seed)  # the adapters' own initialisation draws from the global generator
    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs()))
    randomize_weights(model, seed=seed, std=0.1)
    return model


def test_encode_tokens_without_an_edit_is_the_encoder():
    model = tiny_model().eval()
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            encode_tokens(model.vision_encoder, pixels), model.get_image_embeddings(pixels)
        )


def test_masking_ratio_and_shuffle_fraction_are_what_the_config_says():
    generator = torch.Generator().manual_seed(0)
    chosen = random_token_choice(3, (8, 8), 0.75, generator)
    assert chosen.shape == (3, 8, 8) and chosen.flatten(1).sum(1).tolist() == [48, 48, 48]
    assert not torch.equal(chosen[0], chosen[1])  # a different draw per image
    tokens = torch.randn(2, 8, 8, 5, generator=generator)
    moved = random_token_choice(2, (8, 8), 0.25, generator)
    shuffled = ShuffledEmbeddingDetection.shuffle(tokens, moved)
    changed = (shuffled != tokens).any(-1)
    assert torch.equal(changed, moved) and moved.flatten(1).sum(1).tolist() == [16, 16]
    # a shuffle moves embeddings, it does not invent them
    for index in range(2):
        assert torch.equal(
            shuffled[index][moved[index]].sort(0).values, tokens[index][moved[index]].sort(0).values
        )


@pytest.mark.parametrize("objective", ["mae", "emix", "shed"])
def test_each_objective_learns_on_real_mri_slices(mri_folder, objective):
    images = UnlabelledImages(mri_folder, 64)
    pixels = torch.stack([images[i] for i in range(len(images))])
    model = tiny_model()
    config = EncoderPretrainingConfig(objectives={objective: 1.0}, trainable="encoder", batch_size=8)
    heads = build_objectives(config, model.config.vision_config)
    mark_trainable(model, "encoder")
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad] + list(heads.parameters()), lr=2e-3
    )
    losses = []
    for step in range(40):
        generator = torch.Generator().manual_seed(
            step % 4
        )  # the same four draws again and again: it must fit them
        loss = heads[objective](model.vision_encoder, pixels, generator)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    first, last = np.mean(losses[:4]), np.mean(losses[-4:])
    assert np.isfinite(losses).all() and last < 0.8 * first, (objective, first, last)


def test_adapter_pretraining_changes_only_encoder_adapters_and_reloads(mri_folder, tmp_path):
    model = tiny_model(seed=1)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    config = EncoderPretrainingConfig(
        objectives={"mae": 1.0, "shed": 0.5, "emix": 0.5}, steps=3, batch_size=4, learning_rate=1e-2,
        checkpoint_every=2, log_every=1,
    )  # fmt: skip
    final = pretrain_encoder(model, UnlabelledImages(mri_folder, 64), config, tmp_path / "run")
    loaded = SamAdapterModel.from_pretrained(final).eval()
    changed = {name for name, tensor in loaded.state_dict().items() if not torch.equal(tensor, before[name])}
    assert changed and all(
        name.startswith("vision_encoder.layers.") and "_adapter." in name for name in changed
    )
    assert any("space_adapter.up" in name for name in changed)  # zero-initialised up-projections moved
    pixels = torch.stack([UnlabelledImages(mri_folder, 64)[i] for i in range(2)])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.get_image_embeddings(pixels), model.eval().get_image_embeddings(pixels)
        )
    assert (final / "pretraining_heads.safetensors").is_file()
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,loss,mae,shed,emix" and len(rows) == 4


def assert_two_plus_two_steps_equal_four(images, folder) -> None:
    """A run stopped after 2 steps and resumed to 4 ends with the weights of an unbroken 4-step run."""
    config = EncoderPretrainingConfig(
        objectives={"mae": 1.0}, steps=4, batch_size=2, learning_rate=1e-2, checkpoint_every=2
    )
    unbroken = SamAdapterModel.from_pretrained(pretrain_encoder(tiny_model(), images, config, folder / "a"))
    half = EncoderPretrainingConfig(**{**config.__dict__, "steps": 2})
    pretrain_encoder(tiny_model(), images, half, folder / "b")
    resumed = SamAdapterModel.from_pretrained(pretrain_encoder(tiny_model(), images, config, folder / "b"))
    for name, tensor in unbroken.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, msg=name)


def test_resumed_pretraining_ends_where_an_unbroken_run_ends(mri_folder, tmp_path):
    assert_two_plus_two_steps_equal_four(UnlabelledImages(mri_folder, 64), tmp_path)


def test_sources_and_bad_options_are_checked(tmp_path, mri_folder):
    import nibabel as nib

    volume = np.random.default_rng(0).normal(100, 10, (20, 24, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "scan.nii.gz")
    slices = UnlabelledImages(tmp_path, 64)
    assert len(slices) == 6 and slices[0].shape == (3, 64, 64)
    from msa_hf.data import axial_slices, load_nifti
    from msa_hf.testing import SCRAMBLED_AFFINE

    (tmp_path / "oblique").mkdir()  # slices are counted from the header: the axial axis follows the affine
    nib.save(nib.Nifti1Image(volume, SCRAMBLED_AFFINE), tmp_path / "oblique" / "scan.nii.gz")
    expected = axial_slices(load_nifti(tmp_path / "oblique" / "scan.nii.gz").array)
    oblique = UnlabelledImages(tmp_path / "oblique", 64)
    assert len(oblique) == len(expected) != 6
    assert torch.equal(oblique[len(expected) - 1], image_to_pixel_values(expected[-1], 64, "MR"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        UnlabelledImages(tmp_path / "empty", 64)
    with pytest.raises(ValueError, match="choose weights"):
        EncoderPretrainingConfig(objectives={"simclr": 1.0})
    with pytest.raises(ValueError, match="at least 2"):
        EncoderPretrainingConfig(objectives={"emix": 1.0}, batch_size=1)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):  # it saved an untrained "final"
        EncoderPretrainingConfig(steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        EncoderPretrainingConfig(learning_rate=0.0)
    from msa_hf.cli import main

    assert main(["pretrain-encoder", str(tmp_path / "empty"), str(tmp_path / "out"), "--base", "tiny"]) == 2


def test_a_prepared_dataset_is_a_source_with_its_labels_ignored(disk_dataset):
    from msa_hf.data import load_prepared

    images = UnlabelledImages(disk_dataset, 64)
    prepared = load_prepared(disk_dataset)
    assert len(images) == sum(len(prepared[split]) for split in prepared)
    assert images[0].shape == (3, 64, 64) and images[0].std() > 0.1


@pytest.mark.ddp
def test_two_process_pretraining_on_cpu(tiny_base, mri_folder, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        str(repo / "pretrain.py"), str(mri_folder), str(tmp_path / "ddp"), "--base", str(tiny_base),
        "--objective", "mae=1", "--objective", "shed=0.5", "--steps", "2", "--batch-size", "2",
        "--checkpoint-every", "2",
    ]  # fmt: skip
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "ddp" / "pretraining_result.json").read_text())
    assert result == {"steps": 2, "num_processes": 2, "weights_agree": True}
    assert done.stdout.count("pretrained encoder:") == 1  # said once, by the main process
    pretrained = SamAdapterModel.from_pretrained(tmp_path / "ddp" / "final")
    # adapter up-projections start at zero: non-zero ones were trained
    ups = [
        t
        for n, t in pretrained.state_dict().items()
        if n.startswith("vision_encoder.") and "_adapter.up." in n
    ]
    assert ups and all(t.abs().max() > 0 for t in ups)


@pytest.mark.ddp
def test_streamed_pretraining_splits_between_processes_and_resumes_exactly(disk_dataset, tmp_path):
    from msa_hf.encoder_pretraining import StreamedImages

    first, second = (
        StreamedImages(disk_dataset, 64, seed=3, buffer_size=8, process_index=i, num_processes=2)
        for i in (0, 1)
    )
    head = next(iter(first))
    assert head.shape == (3, 64, 64)
    ones, twos = iter(first), iter(second)
    assert not any(torch.equal(next(ones), next(twos)) for _ in range(4))  # each process its own share
    assert_two_plus_two_steps_equal_four(StreamedImages(disk_dataset, 64, seed=3, buffer_size=8), tmp_path)
    with pytest.raises(ValueError, match="streaming reads prepared datasets"):
        StreamedImages(tmp_path, 64)
