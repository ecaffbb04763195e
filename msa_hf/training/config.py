# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The training configuration: one typed dataclass, from a YAML file and/or command-line flags.

`parse_train_config(argv)` reads `--config run.yaml` first, then every field as `--field-name value`
(booleans as `--flag` / `--no-flag`, never `type=bool`). Unknown YAML keys and invalid values are errors
that name the key. The resolved config is written to the run directory as `train_config.yaml`.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from msa_hf.training.config_checks import check_field_ranges

if typing.TYPE_CHECKING:
    from msa_hf.training.loop import LoopSettings

METHODS = ("msa", "lora", "full", "decoder")
DECODER_MODES = ("frozen", "adapters", "full")


@dataclass
class TrainConfig:
    """Everything a training run needs (see `train.py --help`)."""

    base: str = field(
        default="tiny",
        metadata={
            "help": "'tiny' (the shipped synthetic-pretrained base), a local folder, a Hub id, or a .pth"
        },
    )
    dataset: str = field(default="data/mni152-objects", metadata={"help": "prepared dataset directory"})
    output_dir: str = field(default="runs/msa", metadata={"help": "run directory (checkpoints, model, card)"})
    method: Literal["msa", "lora", "full", "decoder"] = field(
        default="msa", metadata={"help": "msa adapters | lora baseline | full fine-tuning | decoder only"}
    )
    decoder_training: Literal["frozen", "adapters", "full"] = field(
        default="full", metadata={"help": "MSA decoder mode (the paper: full)"}
    )
    adapter_bottleneck_ratio: float = field(default=0.25, metadata={"help": "adapter width / model width"})
    lora_rank: int = field(default=8, metadata={"help": "rank of the LoRA baseline"})
    use_depth_branch: bool = field(default=False, metadata={"help": "3-D: depth attention over D slices"})
    num_slices: int = field(default=4, metadata={"help": "D, slices per window for the depth branch"})
    steps: int = field(default=600, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "per process (windows per process in 3-D)"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=30, metadata={"help": "linear warm-up, then cosine decay"})
    box_probability: float = field(default=0.5, metadata={"help": "share of batches prompted with boxes"})
    num_clicks: int = field(default=1, metadata={"help": "positive clicks of click prompts"})
    iterative_probability: float = field(
        default=0.3, metadata={"help": "share of batches with an error-click round"}
    )
    distill_probability: float = field(
        default=0.0,
        metadata={"help": "share of steps that prompt the images anywhere and learn the base's own masks "
                  "(self-distillation: keeps other structures and the base's own task at one encoder pass, gives up "
                  "most of the one-click gain; method msa, 2-D; docs/retention.md)"},
    )  # fmt: skip
    distill_outside_labels: bool = field(
        default=False,
        metadata={"help": "self-distillation prompts stay off the structures being adapted to (the one of "
                  "several random prompts whose base mask overlaps them least), so the base is never asked to "
                  "undo the adaptation"},
    )  # fmt: skip
    base_fallback: bool = field(
        default=False,
        metadata={"help": "the saved model answers with its base (kept inside it) wherever the adapted answer "
                  "ignores the prompt: its clicks outside its mask, most of it outside the box (keeps other "
                  "structures at the base's Dice and most of the gain, at twice the image-encoder cost; method "
                  "msa, 2-D; docs/retention.md)"},
    )  # fmt: skip
    replay_share: float = field(
        default=0.0,
        metadata={"help": "share of every batch replaced by the base's synthetic pictures with their exact "
                  "masks (replay: keeps the base's own kind of pictures, not other structures of yours; 2-D; "
                  "docs/retention.md)"},
    )  # fmt: skip
    dice_weight: float = field(default=1.0, metadata={"help": "Dice loss weight"})
    bce_weight: float = field(default=1.0, metadata={"help": "binary cross-entropy weight"})
    iou_weight: float = field(default=1.0, metadata={"help": "IoU-head regression weight (0 turns it off)"})
    augment: bool = field(default=True, metadata={"help": "flips, rotation, scale, intensity jitter"})
    window: str | None = field(default=None, metadata={"help": "CT window preset (default by modality)"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "activation checkpointing"})
    recompute_frozen_mlp: bool = field(
        default=True,
        metadata={
            "help": "msa: recompute frozen encoder MLPs' hidden layer in backward (less memory, a little slower)"
        },
    )
    classes: str | None = field(
        default=None,
        metadata={"help": "structures to adapt to, by name or label value, comma-separated (default: all)"},
    )
    compile: bool = field(
        default=False,
        metadata={
            "help": "torch.compile the model (inductor; compiles on the first steps; torch 2.7 or newer)"
        },
    )
    eval_every: int = field(default=200, metadata={"help": "steps between validations"})
    checkpoint_every: int = field(default=100, metadata={"help": "steps between saved states"})
    resume: str | None = field(default=None, metadata={"help": "'latest' or a checkpoint folder"})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "replace an earlier run in --output-dir (model, checkpoints, evaluation) instead of refusing"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of data order, prompts, augmentation and init"})
    num_workers: int | None = field(
        default=None,
        metadata={
            "help": "DataLoader worker processes that read, augment and prompt the rows (default: on a GPU, "
            "one per CPU core of this process's share less one for the process itself, 1 to 8; on the CPU "
            "none, as the step itself uses the cores)"
        },
    )
    log_with: str = field(default="tensorboard", metadata={"help": "accelerate tracker ('none' to disable)"})
    text_prompts: bool = field(
        default=False,
        metadata={"help": "train a text-prompt projection too (method msa; needs --text-encoder)"},
    )
    text_encoder: str | None = field(
        default=None, metadata={"help": "CLIP text model (Hub id or folder) embedding the class descriptions"}
    )
    text_descriptions: str | None = field(
        default=None,
        metadata={"help": "JSON file {class name: [descriptions]} added to the shipped templates"},
    )
    text_only_probability: float = field(
        default=0.5, metadata={"help": "share of text-prompted batches with no click or box"}
    )
    evaluate_test: bool = field(
        default=True, metadata={"help": "after training: test-split Dice table next to the zero-shot base's"}
    )
    push_to_hub: bool = field(
        default=False,
        metadata={"help": "after training: publish the model, its adapter and card as msa-hf push does "
                  "(token: HF_TOKEN or `hf auth login`)"},
    )  # fmt: skip
    hub_model_id: str | None = field(
        default=None,
        metadata={"help": "with --push-to-hub: the model repo, org/name (adapter: org/name-adapter)"},
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: use one of {METHODS}.")
        if self.decoder_training not in DECODER_MODES:
            raise ValueError(f"decoder_training={self.decoder_training!r}: use one of {DECODER_MODES}.")
        if self.push_to_hub:  # refused now, not after hours of training
            from msa_hf.hub.push import check_repo_id

            if not self.hub_model_id:
                raise ValueError("push_to_hub needs hub_model_id: pass --hub-model-id org/name.")
            check_repo_id(self.hub_model_id, "hub_model_id")
        # checked here, before the base loads, rather than by AdamW or at the first batch
        check_field_ranges(
            self,
            at_least_one=(
                "steps",
                "batch_size",
                "gradient_accumulation_steps",
                "num_slices",
                "lora_rank",
                "num_clicks",
                "eval_every",
                "checkpoint_every",
            ),
            positive=("learning_rate", "adapter_bottleneck_ratio"),
            # a negative loss weight would maximise that loss
            non_negative=(
                "weight_decay",
                "warmup_steps",
                "dice_weight",
                "bce_weight",
                "iou_weight",
                "num_workers",
            ),
            shares=(
                "box_probability",
                "iterative_probability",
                "text_only_probability",
                "distill_probability",
                "replay_share",
            ),
        )
        if self.distill_probability > 0 and (self.method != "msa" or self.use_depth_branch):
            raise ValueError(
                f"distill_probability={self.distill_probability} needs method='msa' without the depth branch "
                "(the teacher is the model with its MSA adapters off)."
            )
        if self.base_fallback and (self.method != "msa" or self.use_depth_branch):
            raise ValueError(
                "base_fallback needs method='msa' without the depth branch (the base is the model with its MSA "
                "adapters off and the base's own mask decoder)."
            )
        if self.distill_outside_labels and self.distill_probability == 0:
            raise ValueError(
                "distill_outside_labels chooses where self-distillation prompts go; set distill_probability too."
            )
        if self.replay_share > 0 and (self.use_depth_branch or self.text_prompts):
            raise ValueError(
                f"replay_share={self.replay_share} needs 2-D training without text prompts (the data engine's "
                "pictures have no slices around them and no class names)."
            )
        if self.text_prompts and (self.method != "msa" or not self.text_encoder):
            raise ValueError(
                "text_prompts needs method='msa' and a text_encoder (e.g. openai/clip-vit-base-patch32)."
            )
        from msa_hf.data.transforms import check_ct_window
        from msa_hf.inference.placement import check_torch_compiles_sam

        check_ct_window(self.window)
        if self.compile:
            check_torch_compiles_sam("compile=True (--compile)")

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)

    @property
    def loss_weights(self) -> dict[str, float]:
        """MSA's Dice + BCE (+ the IoU head's regression) as `sam_loss` weights."""
        return {"focal_weight": 0.0, "dice_weight": self.dice_weight, "bce_weight": self.bce_weight,
                "iou_weight": self.iou_weight}  # fmt: skip

    def loop_settings(self, description: str) -> LoopSettings:
        """The optimisation settings of this run for the training loop."""
        from msa_hf.training.loop import LoopSettings

        return LoopSettings(
            steps=self.steps, learning_rate=self.learning_rate, weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps, gradient_accumulation_steps=self.gradient_accumulation_steps,
            checkpoint_every=self.checkpoint_every, description=description,
        )  # fmt: skip


@dataclass
class AdapterTrainingConfig(TrainConfig):
    """A `TrainConfig` with the defaults of a short adaptation run (the base gate's, `train_adapters`'):
    500 steps, a 20-step warm-up, no tracker, no test-split report, validation and a checkpoint at the end."""

    steps: int = 500
    warmup_steps: int = 20
    eval_every: int = 500
    checkpoint_every: int = 500
    log_with: str = "none"
    evaluate_test: bool = False


def _without_none(annotation: Any) -> Any:
    """`int | None` -> `int` (an optional number is parsed as the number); other annotations unchanged."""
    arguments = [argument for argument in typing.get_args(annotation) if argument is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(arguments) == 1:
        return arguments[0]
    return annotation


def _coerce(name: str, value: Any, annotation: Any, source: str) -> Any:
    """YAML reads `1e-3` as a string and `5` as an int for a float field: convert, naming the key on failure."""
    if value is None:
        return None
    annotation = _without_none(annotation)
    try:
        if annotation is bool:
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
            return value
        if annotation is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError("expected an integer")
            return int(float(value))
        if annotation is float:
            return float(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: {name}={value!r}: {error}.") from error
    return value


# flags spelled as every msa-hf command spells them, where the field name says more than the flag should
FLAGS = {"overwrite_output_dir": "--overwrite"}
# fields given as space-separated lists on the command line (stored comma-separated, as in YAML)
LIST_FIELDS = ("classes",)


def build_train_parser(
    prog: str = "train.py",
    description: str = "Adapt a SAM base to a prepared medical dataset (MSA, LoRA, full, decoder).",
) -> argparse.ArgumentParser:
    """Flags for every `TrainConfig` field, plus `--config FILE.yaml`."""
    from msa_hf.command_line import CommandParser

    parser = CommandParser(prog=prog, description=description)
    parser.add_argument("--config", default=None, help="YAML file of TrainConfig fields; flags override it")
    from msa_hf.command_line import DEBUG_FLAG, DEBUG_HELP

    parser.add_argument(DEBUG_FLAG, action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    hints = typing.get_type_hints(TrainConfig)
    for item in dataclasses.fields(TrainConfig):
        flag = FLAGS.get(item.name, "--" + item.name.replace("_", "-"))
        annotation = _without_none(hints[item.name])
        # SUPPRESS keeps unset flags out of the namespace (so a --config file's values stand); the help
        # still names the dataclass default
        default = item.default if item.default is not dataclasses.MISSING else None
        if item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        text = item.metadata.get("help", "")
        if default not in (None, "", [], {}):
            text = f"{text} (default: {default})".strip()
        kwargs: dict[str, Any] = {"help": text, "default": argparse.SUPPRESS}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(annotation) is Literal:
            kwargs["choices"] = typing.get_args(annotation)
        elif annotation in (int, float):
            kwargs["type"] = annotation
        elif item.name in LIST_FIELDS:
            kwargs["nargs"] = "+"
        parser.add_argument(flag, dest=item.name, **kwargs)
    for field_name, flag in FLAGS.items():  # the earlier release's spellings, with a notice
        old = "--" + field_name.replace("_", "-")
        parser.rename(old, flag)
        parser.rename("--no-" + old[2:], "--no-" + flag[2:])
    return parser


def parse_train_config(argv: list[str] | None = None, prog: str = "train.py") -> TrainConfig:
    """YAML (`--config`) then flags -> a validated `TrainConfig`."""
    import yaml

    arguments = vars(build_train_parser(prog).parse_args(argv))
    from msa_hf.command_line import space_or_comma_list

    for name in LIST_FIELDS:
        if name in arguments:
            arguments[name] = ",".join(space_or_comma_list(arguments[name]))
    values: dict[str, Any] = {}
    arguments.pop("debug", None)  # the entry point's error boundary reads it
    config_file = arguments.pop("config", None)
    if config_file:
        if not Path(config_file).is_file():
            raise ValueError(f"--config {config_file}: no such file.")
        try:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{config_file}: not valid YAML ({str(error).splitlines()[0]}).") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_file}: expected a mapping of TrainConfig fields.")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise ValueError(f"{config_file}: unknown keys {unknown}; valid keys: {sorted(known)}.")
        hints = typing.get_type_hints(TrainConfig)
        values.update({k: _coerce(k, v, hints[k], str(config_file)) for k, v in loaded.items()})
    values.update(arguments)
    return TrainConfig(**values)
