"""The adaptation loop trains only what it should; evaluation scores what it is given."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from msa_hf.data import (
    PromptSampling,
    SamSegmentationTransform,
    load_prepared,
    prepare_dataset,
    read_class_names,
    to_binary_tasks,
)
from msa_hf.testing import make_msa, write_png_folder
from msa_hf.training.prompted import (
    AdapterTrainingConfig,
    evaluate_prompts,
    evaluate_segmentation,
    train_adapters,
)


def _write_disks(folder):
    """Disk-shaped targets, so filling their box is not already perfect."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:40, 0:56]
    for index in range(6):
        disk = ((yy - 12 - index) ** 2 + (xx - 20 - 3 * index) ** 2 <= (6 + index) ** 2).astype(np.uint8)
        Image.fromarray((disk * 200).astype(np.uint8)).save(folder / f"disk{index}.png")
        Image.fromarray(disk * 255).save(folder / f"disk{index}_mask.png")


def _tasks(tmp_path, image_size=64, deterministic=False, disks=False):
    if disks:
        _write_disks(tmp_path / "src")
    else:
        write_png_folder(tmp_path / "src", count=6)
    prepare_dataset(tmp_path / "src", tmp_path / "out", split=(1.0, 0.0, 0.0))
    tasks = to_binary_tasks(load_prepared(tmp_path / "out")["train"], read_class_names(tmp_path / "out"))
    prompts = PromptSampling(num_positive=1, use_box=True, box_jitter=0.0)
    tasks.set_transform(
        SamSegmentationTransform(image_size=image_size, prompts=prompts, deterministic=deterministic)
    )
    return tasks


def test_train_adapters_changes_only_trainable_parameters(tmp_path, sam_model):
    model = make_msa(sam_model, decoder_training="adapters").mark_only_adapters_as_trainable()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    history = train_adapters(
        model, _tasks(tmp_path), AdapterTrainingConfig(steps=4, batch_size=4, warmup_steps=1)
    )
    assert len(history) == 4 and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert any(".up." in name for name in changed)  # the zero-initialised up-projections moved


class BoxFillModel(torch.nn.Module):
    """Predicts the prompt box filled: its Dice must equal the box-fill baseline exactly."""

    device = torch.device("cpu")

    def get_image_embeddings(self, pixel_values):
        return pixel_values

    def forward(self, image_embeddings, input_boxes=None, multimask_output=False, **kwargs):
        size = image_embeddings.shape[-1]
        logits = torch.full((len(image_embeddings), 1, 3, size, size), -10.0)
        for index, (x0, y0, x1, y1) in enumerate(input_boxes[:, 0].long().tolist()):
            logits[index, 0, :, y0 : y1 + 1, x0 : x1 + 1] = 10.0
        return SimpleNamespace(pred_masks=logits, iou_scores=torch.ones(len(image_embeddings), 1, 3))


def test_evaluation_of_a_box_filling_model_equals_the_baseline(tmp_path):
    scores = evaluate_segmentation(
        BoxFillModel(), _tasks(tmp_path, deterministic=True, disks=True), "box", batch_size=4
    )
    # a disk fills pi/4 of its box: Dice 2 * 0.785 / 1.785 = 0.88 (a little off on pixel disks)
    assert abs(scores["dice"] - scores["box_fill"]) < 1e-6 and 0.8 < scores["dice"] < 0.95
    assert set(scores["per_class"]) == {"class_1"} and scores["per_class"]["class_1"][2] == 6


def test_several_prompt_types_are_scored_from_one_encoding_per_batch(tmp_path, sam_model):
    model = make_msa(sam_model).eval()
    tasks = _tasks(tmp_path, deterministic=True, disks=True)
    separately = {
        prompt: evaluate_segmentation(model, tasks, prompt, batch_size=4) for prompt in ("points1", "box")
    }
    encodes = []
    model.vision_encoder.register_forward_hook(lambda *args: encodes.append(1))
    together = evaluate_prompts(model, tasks, ("points1", "box"), batch_size=4)
    assert len(encodes) == 2  # 6 rows in batches of 4: one encoding per batch, not per prompt type
    for prompt, expected in separately.items():
        assert abs(together[prompt]["dice"] - expected["dice"]) < 1e-6
        assert together[prompt]["per_class"] == expected["per_class"]
    assert separately["points1"]["dice"] != separately["box"]["dice"]
