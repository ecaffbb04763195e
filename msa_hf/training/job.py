# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The training job behind `accelerate launch train.py` and `msa-hf train`.

One process or many (DDP), mixed precision from the launcher, gradient accumulation, activation
checkpointing, seeded everything, and checkpoints every `checkpoint_every` optimizer steps that resume
*exactly*: the data order (seedable sampler, `set_epoch`), prompts and augmentation (seeded per epoch and
row), and per-batch prompt choices (seeded per step) are functions of the step, so a resumed run ends with
the weights of an uninterrupted one. Checkpoints are written to a temporary folder and renamed into place,
so a kill never leaves a half-written `latest`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msa_hf.modeling.frozen_mlp import set_frozen_mlp_recompute
from msa_hf.processing.processor import MsaProcessor
from msa_hf.training.config import TrainConfig
from msa_hf.training.methods import build_model_for_method, trainable_parameter_count
from msa_hf.training.prompted import evaluate_prompts, prompted_training_loss
from msa_hf.training.state import save_training_state

CHECKPOINTS = "checkpoints"
LATEST = "latest"


@dataclass
class TrainResult:
    """What a run produced: where, how far, and its validation scores."""

    output_dir: str
    steps: int
    trainable_parameters: int
    total_parameters: int
    seconds: float
    validation: dict[str, Any] = field(default_factory=dict)
    best_step: int | None = None
    num_processes: int = 1
    weights_agree: bool = True
    peak_memory_mb: float = 0.0


# What a resumed run may change: where and how often it reports, and how it computes (compiled or not,
# recomputing activations or not), not what it computes
RESUME_MAY_CHANGE = frozenset({
    "resume", "output_dir", "num_workers", "log_with", "eval_every", "checkpoint_every", "evaluate_test",
    "compile", "gradient_checkpointing", "recompute_frozen_mlp", "overwrite_output_dir",
})  # fmt: skip

# what shows that an output directory holds an earlier run (a run that failed before training, e.g. on a
# mistyped --base, leaves only train_config.yaml, and may simply be run again) ...
EARLIER_RUN_MARKERS = ("checkpoints", "model", "best", "train_result.json")
# ... and what --overwrite-output-dir removes, so no result of the earlier run stays beside the new one
EARLIER_RUN_OUTPUTS = (*EARLIER_RUN_MARKERS, "evaluation", "evaluation-zero-shot")


def earlier_run_outputs(config: TrainConfig, output_dir: Path) -> list[Path]:
    """The outputs of an earlier run in `output_dir` that a fresh run (no `resume`) would replace: none, or
    all of them with `overwrite_output_dir`. Raises `ValueError` rather than overwrite a run unasked."""
    if config.resume or not any((output_dir / name).exists() for name in EARLIER_RUN_MARKERS):
        return []
    found = [output_dir / name for name in EARLIER_RUN_OUTPUTS if (output_dir / name).exists()]
    if not config.overwrite_output_dir:
        raise ValueError(
            f"{output_dir} holds an earlier run ({', '.join(path.name for path in found)}): pass --resume latest "
            "to continue it, --overwrite-output-dir to replace it, or choose another --output-dir."
        )
    return found


def check_resume_config(config: TrainConfig, output_dir: Path) -> None:
    """Refuse to resume with settings that differ from the run's recorded `train_config.yaml`.

    A resumed run continues the recorded one exactly (same weights as an uninterrupted run). A changed learning
    rate, step count, loss weight, ... would either be silently ignored (the optimiser and scheduler state
    come from the checkpoint) or make a run that is neither. Runs without a recorded config are not checked.
    """
    import yaml

    recorded_file = output_dir / "train_config.yaml"
    if not recorded_file.is_file():
        return
    recorded = yaml.safe_load(recorded_file.read_text()) or {}
    asked = asdict(config)
    changed = [
        name for name, value in asked.items()
        if name not in RESUME_MAY_CHANGE and name in recorded and recorded[name] != value
    ]  # fmt: skip
    if changed:
        differences = "; ".join(
            f"{name}: recorded {recorded[name]!r}, asked {asked[name]!r}" for name in changed
        )
        raise ValueError(
            f"resume={config.resume!r} in {output_dir}: this run's settings differ from the recorded ones "
            f"({differences}). A resumed run continues the recorded run exactly; pass the recorded values (or "
            f"drop those flags), or start a new run in another --output-dir. {recorded_file} is unchanged."
        )


def _task_dataset(config: TrainConfig, split: str, image_size: int, train: bool) -> Any:
    from msa_hf.data import (
        PromptSampling,
        SamSegmentationTransform,
        SamVolumeTransform,
        VolumeWindowDataset,
        load_prepared,
        read_class_names,
        select_class_names,
        to_binary_tasks,
    )

    class_names = select_class_names(read_class_names(config.dataset), config.classes)
    slices = load_prepared(config.dataset)
    if split not in slices:
        raise ValueError(
            f"{config.dataset} has no {split!r} split (it has {list(slices)}); re-run msa-hf prepare."
        )
    if config.use_depth_branch:
        # 3-D: windows of D consecutive slices, point prompts per slice (an empty slice has no box)
        transform = SamVolumeTransform(
            image_size=image_size,
            prompts=PromptSampling(
                num_positive=config.num_clicks, click_strategy="uniform" if train else "interior"
            ),
            augment=train and config.augment,
            window=config.window,
            deterministic=True,
            seed=config.seed,
        )
        windows = VolumeWindowDataset(slices[split], config.num_slices, class_names, transform=transform)
        return windows, transform
    tasks = to_binary_tasks(slices[split], class_names, image_size=image_size)
    prompts = PromptSampling(
        num_positive=config.num_clicks,
        click_strategy="uniform" if train else "interior",
        use_box=True,
        box_jitter=0.1 if train else 0.0,
    )
    window = config.window
    transform = SamSegmentationTransform(
        image_size=image_size,
        prompts=prompts,
        augment=train and config.augment,
        window=window,
        deterministic=True,  # prompts are a function of (seed, row): resumable; the trainer reseeds per epoch
        seed=config.seed,
    )
    tasks.set_transform(transform)
    return tasks, transform


def _schedule(config: TrainConfig):
    def factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / max(config.warmup_steps, 1))
        return warmup * 0.5 * (1 + math.cos(math.pi * min(step / config.steps, 1.0)))

    return factor


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint `latest` points to, or None."""
    pointer = Path(output_dir) / CHECKPOINTS / LATEST
    if not pointer.is_file():
        return None
    return Path(output_dir) / CHECKPOINTS / pointer.read_text().strip()


def _save_checkpoint(accelerator: Any, output_dir: Path, step: int, best: dict[str, Any]) -> None:
    """Write the state to a temporary folder, then rename it and the `latest` pointer into place."""
    root = output_dir / CHECKPOINTS
    final = root / f"step-{step:07d}"
    temporary = root / f".tmp-step-{step:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
    accelerator.wait_for_everyone()
    save_training_state(accelerator, temporary)
    if accelerator.is_main_process:
        (temporary / "trainer_state.json").write_text(json.dumps({"step": step, **best}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
        pointer = root / f".{LATEST}.tmp"
        pointer.write_text(final.name)
        os.replace(pointer, root / LATEST)
        for old in sorted(root.glob("step-*"))[:-2]:  # keep the two newest
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def run_training(config: TrainConfig) -> TrainResult:
    """Train per `config` (see the module docstring); returns the result and writes the run directory."""
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    torch.set_flush_denormal(True)
    output_dir = Path(config.output_dir)
    log_with = None if config.log_with in ("none", "", None) else config.log_with
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=log_with,
        project_dir=str(output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
    )
    set_seed(config.seed)
    if config.resume:
        check_resume_config(config, output_dir)
    replaced = earlier_run_outputs(config, output_dir)
    accelerator.wait_for_everyone()  # every process has looked before anything is removed or written
    if accelerator.is_main_process:
        for path in replaced:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.yaml").write_text(config.to_yaml())
    text_encoder, user_descriptions = None, {}
    if config.text_prompts:  # frozen CLIP: class descriptions -> features, once per distinct description
        from msa_hf.modeling.text_prompts import TextEncoder

        text_encoder = TextEncoder.from_pretrained(config.text_encoder)
        user_descriptions = _read_descriptions(config.text_descriptions) if config.text_descriptions else {}
    model = build_model_for_method(config, text_embedding_dim=text_encoder.dim if text_encoder else None)
    if config.gradient_checkpointing:
        model.activation_checkpointing_enable()
    set_frozen_mlp_recompute(model, config.recompute_frozen_mlp)
    if config.compile:
        # in place: the module, its parameter names and save_pretrained stay as they are; only calls compile
        model.compile()
    image_size = model.config.vision_config.image_size
    processor = MsaProcessor.for_model(model, config.window)  # saved with every model this run writes
    train_set, train_transform = _task_dataset(config, "train", image_size, train=True)
    validation_set, _ = _task_dataset(config, "validation", image_size, train=False)
    if config.iou_weight == 0:
        # an IoU head outside the loss gets no gradient, which DDP refuses: freeze it instead
        for name, parameter in model.named_parameters():
            if "iou_prediction_head" in name:
                parameter.requires_grad_(False)
    trainable, total = trainable_parameter_count(model)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=config.batch_size, shuffle=True, drop_last=True, num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
    )  # fmt: skip
    if len(loader) == 0:
        raise ValueError(
            f"the train split has {len(train_set)} rows, fewer than batch_size={config.batch_size}."
        )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    unwrapped = accelerator.unwrap_model(model)
    step = 0
    best: dict[str, Any] = {"best_dice": None, "best_step": None}
    if config.resume:
        checkpoint = latest_checkpoint(output_dir) if config.resume == "latest" else Path(config.resume)
        if checkpoint is None or not checkpoint.is_dir():
            raise FileNotFoundError(f"resume={config.resume!r}: no checkpoint in {output_dir / CHECKPOINTS}.")
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        step, best = state["step"], {k: state.get(k) for k in ("best_dice", "best_step")}
        accelerator.print(f"resumed from {checkpoint} at step {step}")
    if log_with:
        accelerator.init_trackers("msa_hf", config={k: str(v) for k, v in asdict(config).items()})
    loss_weights = {"focal_weight": 0.0, "dice_weight": config.dice_weight, "bce_weight": config.bce_weight,
                    "iou_weight": config.iou_weight}  # fmt: skip
    micro_per_epoch = len(loader)
    accumulation = config.gradient_accumulation_steps
    micro = step * accumulation
    started = time.time()
    bar = tqdm(
        total=config.steps,
        initial=step,
        desc=f"train {config.method}",
        disable=not accelerator.is_main_process,
    )
    validation: dict[str, Any] = {}
    model.train()
    while step < config.steps:
        epoch, position = divmod(micro, micro_per_epoch)
        loader.set_epoch(epoch)
        train_transform.seed = config.seed * 1_000_003 + epoch  # fresh, reproducible prompts every epoch
        batches = accelerator.skip_first_batches(loader, position) if position else loader
        for batch in batches:
            rng = np.random.default_rng([config.seed, micro])
            if text_encoder is not None:
                batch["text_embeddings"] = text_encoder.cached(
                    _descriptions(batch, rng, user_descriptions)
                ).to(batch["pixel_values"].device)
            with accelerator.accumulate(model):
                loss, parts = prompted_training_loss(
                    model,
                    batch,
                    rng,
                    config.box_probability,
                    config.iterative_probability,
                    loss_weights,
                    unwrapped,
                    config.text_only_probability,
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(parameters, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            micro += 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if log_with:
                accelerator.log({"train/loss": loss.item(), **{f"train/{k}": v.item() for k, v in parts.items()},
                                 "train/lr": scheduler.get_last_lr()[0]}, step=step)  # fmt: skip
            if step % config.eval_every == 0 or step == config.steps:
                validation = _validate(accelerator, unwrapped, validation_set, step, log_with)
                model.train()
                if best["best_dice"] is None or validation["selection"] > best["best_dice"]:
                    best = {"best_dice": validation["selection"], "best_step": step}
                    if accelerator.is_main_process:
                        _save_model(unwrapped, config, output_dir / "best", processor)
            if step % config.checkpoint_every == 0 or step == config.steps:
                _save_checkpoint(accelerator, output_dir, step, best)
            if step >= config.steps:
                break
    bar.close()
    # DDP keeps replicas equal; check it rather than assume it (a bug here silently trains N models)
    checksum = (
        torch.stack([p.detach().double().sum() for p in parameters]).sum().reshape(1).to(accelerator.device)
    )
    checksums = accelerator.gather(checksum)
    weights_agree = bool(torch.allclose(checksums, checksums[:1].expand_as(checksums)))
    if accelerator.is_main_process:
        _save_model(unwrapped, config, output_dir / "model", processor)
    accelerator.wait_for_everyone()
    if log_with:
        accelerator.end_training()
    result = TrainResult(
        output_dir=str(output_dir), steps=step, trainable_parameters=trainable, total_parameters=total,
        seconds=time.time() - started, validation=validation, best_step=best["best_step"],
        num_processes=accelerator.num_processes, weights_agree=weights_agree, peak_memory_mb=_peak_memory_mb(),
    )  # fmt: skip
    if accelerator.is_main_process:
        (output_dir / "train_result.json").write_text(json.dumps(asdict(result), indent=2))
        # every saved model gets its card; train.py's test comparison replaces it with the scored one
        from msa_hf.hub.model_card import render_model_card

        card = render_model_card(config, asdict(result), "", None)
        (output_dir / "model" / "README.md").write_text(card, encoding="utf-8")
    return result


def _read_descriptions(path: str) -> dict[str, list[str]]:
    """`{class name: [descriptions]}` from a JSON file, checked."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"text_descriptions {path}: cannot read it ({error}).") from error
    if not isinstance(content, dict) or not all(
        isinstance(v, list) and all(isinstance(t, str) and t.strip() for t in v) for v in content.values()
    ):
        raise ValueError(f'text_descriptions {path}: expected {{"class name": ["description", ...]}}.')
    return content


def _descriptions(batch: dict[str, Any], rng: np.random.Generator, user: dict[str, list[str]]) -> list[str]:
    """One description per example, drawn from the shipped templates of its class and the user's own."""
    from msa_hf.modeling.text_prompts import random_description

    modalities = batch.get("modality") or ["other"] * len(batch["class_name"])
    return [
        random_description([name], modality, rng, user=user)
        for name, modality in zip(batch["class_name"], modalities, strict=True)
    ]


def _peak_memory_mb() -> float:
    """Peak accelerator memory of this process (CUDA), else its peak resident set size (CPU)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _validate(accelerator: Any, model: Any, dataset: Any, step: int, log_with: str | None) -> dict[str, Any]:
    scores: dict[str, Any] = {}
    if accelerator.is_main_process:
        two_d = not hasattr(dataset, "windows")  # 2-D rows have boxes too; 3-D windows do not
        results = evaluate_prompts(model, dataset, ("points1", "box") if two_d else ("points1",))
        click = results["points1"]
        scores = {
            "points1": click["dice"],
            "box_fill": click["box_fill"],
            "per_class_points1": {k: v[0] for k, v in click["per_class"].items()},
        }
        if two_d:
            box = results["box"]
            scores.update(box=box["dice"], per_class_box={k: v[0] for k, v in box["per_class"].items()})
        # model selection: box Dice in 2-D, one-click Dice in 3-D (no boxes there)
        scores["selection"] = scores.get("box", scores["points1"])
        numbers = {k: v for k, v in scores.items() if isinstance(v, float)}
        accelerator.print(
            f"step {step}: validation Dice " + ", ".join(f"{k} {v:.3f}" for k, v in numbers.items())
        )
        if log_with:
            accelerator.log({f"validation/{k}_dice": v for k, v in numbers.items()}, step=step)
    # every process needs the same best-model decision
    shared = [scores]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        shared = broadcast_object_list(shared)
    return shared[0]


def _save_model(model: Any, config: TrainConfig, folder: Path, processor: MsaProcessor) -> None:
    """The trained model in `save_pretrained` layout (MSA: full model + `adapter/` PEFT checkpoint; LoRA:
    the adapter + the merged model), with its processor."""
    from msa_hf.output_files import atomic_folder

    # complete or not at all: an earlier model in `folder` is replaced only once this one is written
    with atomic_folder(folder, overwrite=True) as staging:
        if config.method == "msa":
            model.save_pretrained(staging)
            from msa_hf.peft_msa import sam_adapter_to_peft_model

            # the peft method carries MSA's adapters; a text-prompt projection lives only in the full model
            if getattr(model, "text_projection", None) is None:
                sam_adapter_to_peft_model(model).save_pretrained(staging / "adapter")
        elif config.method == "lora":
            model.save_pretrained(staging / "adapter")
            import copy

            copy.deepcopy(model).merge_and_unload().save_pretrained(staging)
        else:
            model.save_pretrained(staging)
        processor.save_pretrained(staging)


def _trained_and_zero_shot(config: TrainConfig, output_dir: Path) -> tuple[Any, Any]:
    """The saved model of the run, and the un-adapted base as a `SamAdapterModel` (adapters at their zero
    init, no depth branch: exactly the base)."""
    from msa_hf.modeling.modeling_msa import SamAdapterModel
    from msa_hf.training.base_loading import load_base

    if config.method == "msa":
        trained = SamAdapterModel.from_pretrained(output_dir / "model")
    else:
        from transformers import SamModel

        trained = SamModel.from_pretrained(output_dir / "model")
    return trained, load_base(config.base, SamAdapterModel)


def _write_comparison_and_card(
    config: TrainConfig, output_dir: Path, table: str, test_tables: dict[str, Any]
) -> None:
    """`evaluation/comparison.md` (the Markdown `table`) and the model card from the trained model's
    `test_tables` and the run's `train_result.json`."""
    from msa_hf.hub.model_card import render_model_card

    (output_dir / "evaluation").mkdir(parents=True, exist_ok=True)
    (output_dir / "evaluation" / "comparison.md").write_text(table + "\n")
    result = json.loads((output_dir / "train_result.json").read_text())
    card = render_model_card(config, result, table, test_tables)
    (output_dir / "model" / "README.md").write_text(card, encoding="utf-8")


def test_comparison(config: TrainConfig, output_dir: Path) -> str:
    """Test-split Dice per structure of the trained model next to the un-adapted base (zero-shot); writes
    `evaluation/` (tables, per-case CSVs, overlays, Dice-vs-clicks) and the model card, and returns the
    Markdown table."""
    from msa_hf.evaluation.protocols import evaluate_model, markdown_table

    trained, zero_shot = _trained_and_zero_shot(config, output_dir)
    window = MsaProcessor.from_pretrained(output_dir / "model", trained).window  # as trained
    protocols = ("box", "points1", "iterative")
    reports = {
        name: evaluate_model(
            model,
            config.dataset,
            "test",
            protocols,
            output_dir / folder,
            classes=config.classes,
            window=window,
        )
        for name, model, folder in (
            ("zero-shot", zero_shot, "evaluation-zero-shot"),
            (config.method, trained, "evaluation"),
        )
    }
    table = markdown_table(
        {
            f"{name} {protocol}": reports[name]["tables"][protocol]
            for protocol in protocols
            for name in reports
        }
    )
    _write_comparison_and_card(config, output_dir, table, reports[config.method]["tables"])
    return (
        f"Test-split Dice per structure (per case, slice-prompted; base: {config.base}):\n\n{table}\n\n"
        f"Tables, per-case CSVs, overlays and Dice-vs-clicks: {output_dir / 'evaluation'}"
    )


def volume_test_comparison(config: TrainConfig, output_dir: Path) -> str:
    """3-D (depth branch): test-split Dice per structure on whole volumes (windows of D slices, one click per
    slice showing the structure, reassembled) of the trained model next to the un-adapted base, which sees
    the same windows slice by slice. Writes `evaluation/` (tables, per-case CSV) and the model card, and
    returns the Markdown table."""
    from msa_hf.evaluation.protocols import evaluate_volumes, markdown_table

    trained, zero_shot = _trained_and_zero_shot(config, output_dir)
    window = MsaProcessor.from_pretrained(output_dir / "model", trained).window  # as trained
    reports = {
        name: evaluate_volumes(
            model, config.dataset, "test", depth=config.num_slices, classes=config.classes,
            output_dir=output_dir / folder, window=window,
        )
        for name, model, folder in (
            ("zero-shot", zero_shot, "evaluation-zero-shot"),
            (config.method, trained, "evaluation"),
        )
    }  # fmt: skip
    protocol = "volume_points1"
    table = markdown_table(
        {f"{name} {protocol}": report["tables"][protocol] for name, report in reports.items()}
    )
    _write_comparison_and_card(config, output_dir, table, reports[config.method]["tables"])
    evaluation = output_dir / "evaluation"
    return (
        f"Test-split Dice per structure on whole volumes (per case, one click per slice, windows of "
        f"{config.num_slices} slices; base: {config.base}):\n\n{table}\n\nTables and per-case CSV: {evaluation}"
    )


def main(argv: list[str] | None = None) -> int:
    """`train.py` / `msa-hf train`: parse the config (YAML and flags), train, print where things are."""
    import sys

    from msa_hf.training.base_loading import BaseLoadError
    from msa_hf.training.config import parse_train_config

    try:
        config = parse_train_config(argv)
        result = run_training(config)
    except (BaseLoadError, ValueError, FileNotFoundError) as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    from accelerate import PartialState

    if not PartialState().is_main_process:  # one process scores the test split and writes the card
        return 0
    if config.evaluate_test:
        comparison = volume_test_comparison if config.use_depth_branch else test_comparison
        print(comparison(config, Path(result.output_dir)))
    share = result.trainable_parameters / max(result.total_parameters, 1)
    print(
        f"trained {config.method} on {config.base} for {result.steps} steps in {result.seconds / 60:.1f} min "
        f"({result.trainable_parameters:,} of {result.total_parameters:,} parameters, {share:.1%}); "
        f"model: {Path(result.output_dir) / 'model'} (card: README.md there), best: {Path(result.output_dir) / 'best'} "
        f"(step {result.best_step})"
    )
    return 0
