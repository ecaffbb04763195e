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
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msa_hf.inference.placement import compile_in_place
from msa_hf.modeling.activation_checkpointing import enable_activation_checkpointing
from msa_hf.modeling.frozen_mlp import set_frozen_mlp_recompute
from msa_hf.processing.processor import MsaProcessor
from msa_hf.training.config import TrainConfig
from msa_hf.training.datasets import (
    loader_options,
    task_dataset,
    training_channel,
    training_planes,
    training_slice_spacing,
)
from msa_hf.training.loop import Checkpoints, LoopSettings, LoopTiming, TrainingLoop, epoch_batches
from msa_hf.training.methods import build_model_for_method, trainable_parameter_count
from msa_hf.training.prompted import evaluate_prompts, prompted_training_loss
from msa_hf.training.test_report import test_comparison, volume_test_comparison
from msa_hf.training.text_training import batch_descriptions, read_descriptions


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
    final_loss: float | None = None  # mean training loss of the last 20 steps (this process's)
    # throughput of the steps after the first (all processes' images; validation and checkpoints excluded),
    # the share of that time spent waiting for data, and the first step's seconds (start-up, compilation)
    images_per_second: float | None = None
    data_wait_share: float | None = None
    first_step_seconds: float | None = None
    # a depth-branch run's training slice spacing in mm (its processor's), which inference resamples volumes to
    slice_spacing: float | None = None
    # the channel its multi-channel cases were read in, "3 (T2w)" (its processor's), which inference reads too
    channel: str | None = None


# What a resumed run may change: where and how often it reports, and how it computes (compiled or not,
# recomputing activations or not), not what it computes
RESUME_MAY_CHANGE = frozenset({
    "resume", "output_dir", "num_workers", "log_with", "eval_every", "checkpoint_every", "evaluate_test",
    "compile", "gradient_checkpointing", "recompute_frozen_mlp", "overwrite_output_dir", "push_to_hub",
    "hub_model_id",
})  # fmt: skip

# what shows that an output directory holds an earlier run (a run that failed before training, e.g. on a
# mistyped --base, leaves only train_config.yaml, and may simply be run again) ...
EARLIER_RUN_MARKERS = ("checkpoints", "model", "best", "train_result.json")
# ... and what --overwrite removes, so no result of the earlier run stays beside the new one
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
            "to continue it, --overwrite to replace it, or choose another --output-dir."
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


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint `latest` points to, or None."""
    return Checkpoints(output_dir).latest()


def run_training(config: TrainConfig) -> TrainResult:
    """Train per `config` (see the module docstring); returns the result and writes the run directory."""
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.utils import set_seed

    torch.set_flush_denormal(True)
    output_dir = Path(config.output_dir)
    log_with = None if config.log_with in ("none", "", None) else config.log_with
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=log_with,
        project_dir=str(output_dir),
        # non_blocking: batches come from pinned memory on CUDA (`loader_options`), so the copy overlaps the step
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, non_blocking=True),
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
        user_descriptions = read_descriptions(config.text_descriptions) if config.text_descriptions else {}
    model = build_model_for_method(config, text_embedding_dim=text_encoder.dim if text_encoder else None)
    if config.gradient_checkpointing:
        enable_activation_checkpointing(model)
    set_frozen_mlp_recompute(model, config.recompute_frozen_mlp)
    if config.compile:
        # in place: the module, its parameter names and save_pretrained stay as they are; only calls compile
        compile_in_place(model, "the model")
    image_size = model.config.vision_config.image_size
    # saved with every model this run writes
    processor = MsaProcessor.for_model(
        model,
        config.window,
        training_slice_spacing(config),
        training_planes(config),
        training_channel(config),
    )
    train_set, train_transform = task_dataset(config, "train", image_size, train=True)
    validation_set, _ = task_dataset(config, "validation", image_size, train=False)
    if config.iou_weight == 0:
        # an IoU head outside the loss gets no gradient, which DDP refuses: freeze it instead
        for name, parameter in model.named_parameters():
            if "iou_prediction_head" in name:
                parameter.requires_grad_(False)
    trainable, total = trainable_parameter_count(model)
    settings = LoopSettings(
        steps=config.steps, learning_rate=config.learning_rate, weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps, gradient_accumulation_steps=config.gradient_accumulation_steps,
        checkpoint_every=config.checkpoint_every, description=f"train {config.method}",
    )  # fmt: skip
    loop = TrainingLoop(model, settings, accelerator, checkpoints=Checkpoints(output_dir))
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=config.batch_size, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(config.seed),
        **loader_options(config.num_workers, accelerator.device, accelerator.num_processes),
    )  # fmt: skip
    if len(loader) == 0:
        raise ValueError(
            f"the train split has {len(train_set)} rows, fewer than batch_size={config.batch_size}."
        )
    loader = loop.prepare(loader)
    loop.state = {"best_dice": None, "best_step": None}
    if config.resume:
        checkpoint = loop.checkpoints.latest() if config.resume == "latest" else Path(config.resume)
        if checkpoint is None or not checkpoint.is_dir():
            raise FileNotFoundError(f"resume={config.resume!r}: no checkpoint in {loop.checkpoints.root}.")
        loop.resume(checkpoint)
        accelerator.print(f"resumed from {checkpoint} at step {loop.step}")
    if log_with:
        accelerator.init_trackers("msa_hf", config={k: str(v) for k, v in asdict(config).items()})
    loss_weights = {"focal_weight": 0.0, "dice_weight": config.dice_weight, "bce_weight": config.bce_weight,
                    "iou_weight": config.iou_weight}  # fmt: skip

    def reseed_prompts(epoch: int) -> None:  # fresh, reproducible prompts and augmentation every epoch
        train_transform.reseed(config.seed * 1_000_003 + epoch)  # workers kept between epochs see it too

    teacher = None
    if config.distill_probability > 0:  # made before the first step: the base as it is now
        from msa_hf.training.retention import BaseTeacher

        teacher = BaseTeacher(loop.unwrapped)
    replay = None
    if config.replay_share > 0:  # drawn ahead in workers, as the dataset's rows are read
        from msa_hf.training.retention import ReplayDraws, ReplayFeed, SyntheticReplay, replayed_row_count

        draws = ReplayDraws(
            SyntheticReplay(image_size, seed=config.seed),
            replayed_row_count(config.batch_size, config.replay_share),
            config.num_clicks,
            config.seed,
        )
        replay = ReplayFeed(
            draws, accelerator.num_processes, accelerator.process_index,
            **loader_options(config.num_workers, accelerator.device, accelerator.num_processes),
        )  # fmt: skip

    def loss_of(batch: dict[str, Any], micro: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rng = np.random.default_rng([config.seed, micro])  # per-batch prompt choices: a function of the step
        if replay is not None:  # its own generator: the batch's other choices stay those of a run without it
            from msa_hf.training.retention import mix_replayed_rows

            batch = mix_replayed_rows(batch, replay.rows_for(micro))
        # drawn only when distillation is on, so runs without it take the same random numbers as before
        if teacher is not None and rng.random() < config.distill_probability:
            from msa_hf.training.retention import distillation_batch

            use_box = bool(rng.random() < config.box_probability)
            distilled = distillation_batch(teacher, batch, rng, use_box)
            return prompted_training_loss(
                loop.model, distilled, rng, float(use_box), config.iterative_probability, loss_weights,
                loop.unwrapped,
            )  # fmt: skip
        if text_encoder is not None:
            batch["text_embeddings"] = text_encoder.cached(
                batch_descriptions(batch, rng, user_descriptions)
            ).to(batch["pixel_values"].device)
        return prompted_training_loss(
            loop.model, batch, rng, config.box_probability, config.iterative_probability, loss_weights,
            loop.unwrapped, config.text_only_probability,
        )  # fmt: skip

    validation: dict[str, Any] = {}

    def validate(step: int, loss: float, parts: dict[str, float]) -> None:
        nonlocal validation
        if step % config.eval_every and step != config.steps:
            return
        validation = _validate(accelerator, loop.unwrapped, validation_set, step, log_with)
        if loop.state["best_dice"] is None or validation["selection"] > loop.state["best_dice"]:
            loop.state = {"best_dice": validation["selection"], "best_step": step}
            if accelerator.is_main_process:
                _save_model(loop.unwrapped, config, output_dir / "best", processor)

    started = time.time()
    loop.run(epoch_batches(loader, loop, reseed_prompts), loss_of, validate)
    weights_agree = loop.replicas_agree()
    if accelerator.is_main_process:
        _save_model(loop.unwrapped, config, output_dir / "model", processor)
    accelerator.wait_for_everyone()
    if log_with:
        accelerator.end_training()
    result = TrainResult(
        output_dir=str(output_dir), steps=loop.step, trainable_parameters=trainable, total_parameters=total,
        seconds=time.time() - started, validation=validation, best_step=loop.state["best_step"],
        num_processes=accelerator.num_processes, weights_agree=weights_agree, peak_memory_mb=_peak_memory_mb(),
        final_loss=float(np.mean(loop.losses[-20:])) if loop.losses else None,
        slice_spacing=processor.slice_spacing,
        channel=processor.channel_choice().describe() if processor.channel is not None else None,
        **_throughput(loop.timing, config.batch_size * accelerator.num_processes),
    )  # fmt: skip
    if accelerator.is_main_process:
        (output_dir / "train_result.json").write_text(json.dumps(asdict(result), indent=2))
        # every saved model gets its card; train.py's test comparison replaces it with the scored one
        from msa_hf.hub.model_card import render_model_card

        card = render_model_card(config, asdict(result), "", None)
        (output_dir / "model" / "README.md").write_text(card, encoding="utf-8")
    return result


def _throughput(timing: LoopTiming, images_per_micro_batch: int) -> dict[str, float | None]:
    """`TrainResult`'s throughput fields from the loop's clock (None where no step after the first ran)."""
    rate = timing.micro_batches * images_per_micro_batch / timing.seconds if timing.seconds > 0 else None
    return {
        "images_per_second": rate,
        "data_wait_share": timing.data_share,
        "first_step_seconds": timing.first_step_seconds or None,
    }


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
    from msa_hf.training.base_loading import hub_id_of_base

    base_id = hub_id_of_base(config.base)  # an adapter config names its base by Hub id, never by local path
    with atomic_folder(folder, overwrite=True) as staging:
        if config.method == "msa":
            model.save_pretrained(staging)
            from msa_hf.peft_msa import sam_adapter_to_peft_model

            # the peft method carries MSA's adapters; a text-prompt projection lives only in the full model
            if getattr(model, "text_projection", None) is None:
                adapter = sam_adapter_to_peft_model(model)
                adapter.peft_config["default"].base_model_name_or_path = base_id
                adapter.save_pretrained(staging / "adapter")
        elif config.method == "lora":
            for adapter_config in model.peft_config.values():
                adapter_config.base_model_name_or_path = base_id
            # peft fills a missing base name from the wrapped model's `name_or_path` (a local folder here)
            model.get_base_model().name_or_path = base_id or ""
            model.save_pretrained(staging / "adapter")
            import copy

            copy.deepcopy(model).merge_and_unload().save_pretrained(staging)
        else:
            model.save_pretrained(staging)
        processor.save_pretrained(staging)


def main(argv: list[str] | None = None, prog: str = "train.py") -> int:
    """`train.py` / `msa-hf train`: parse the config (YAML and flags), train, print where things are. Every
    error is one line on stderr (the traceback with `--debug`)."""
    import sys

    from msa_hf.command_line import error_boundary

    return error_boundary(prog, lambda rest: run_main(rest, prog), sys.argv[1:] if argv is None else argv)


def run_main(argv: list[str], prog: str = "train.py") -> int:
    """`main` without its error boundary (`msa-hf` puts its own around it)."""
    import sys

    from msa_hf.training.config import parse_train_config

    config = parse_train_config(argv, prog)
    result = run_training(config)
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
    if result.images_per_second is not None:
        print(
            f"throughput: {result.images_per_second:.1f} images/s over steps 2-{result.steps} (waiting for data "
            f"{result.data_wait_share:.0%} of that time); the first step took {result.first_step_seconds:.1f} s "
            "(start-up and any compilation)"
        )
    if config.push_to_hub:
        from msa_hf.hub.push import push_run

        try:
            plan = push_run(result.output_dir, config.hub_model_id)
        except ValueError as error:  # the run is complete on disk either way; `msa-hf push` can retry
            print(
                f"train: {error} The trained run is in {result.output_dir}: `msa-hf push` it later.",
                file=sys.stderr,
            )
            return 2
        print("pushed:\n" + plan.describe())
    return 0
