# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`python -m benchmarks.retention_clicks`: the retention goal measured on ten first clicks per slice.

The retention goal (`make retention`) is scored with one first click per prompted slice, its most interior
pixel, so a split holds 6 to 20 prompts per structure and one slice answered by the other model moves a
seed's share by a tenth or more. The evaluation rows carry ten clicks per slice (the most interior, then nine
drawn uniformly inside the target, fixed per row). This benchmark replays the models `make retention` trained
with `--base-fallback` (runs/retention/fallback-s<seed>; no training here), starting the one-click and the
iterative protocols from each of the ten clicks in turn, as the fallback (the shipped rule), as the adapted
model alone (adaptation without retention, same weights) and as the base alone (zero-shot). It reports the
goal's two shares per seed and split, from the interior click alone (what `make retention` scores) and from
all ten first clicks (the mean Dice over them).

    python -m benchmarks.retention_clicks      # seeds 0 1 2, about 12 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.fallback_rules import (
    CLASSES,
    HELD_OUT,
    RuleReplay,
    adapted_alone,
    base_alone,
    fallback_models,
    fallback_models_named,
    shipped,
)
from benchmarks.retention import GOAL_PROTOCOLS, add_run_arguments, goal_shares, goals, meets_goal, written_by

PROTOCOLS = GOAL_PROTOCOLS  # the goal's protocols, each started from every first click
RULES = {"fallback": shipped, "adapted": adapted_alone, "base": base_alone}


def first_click_at(transform: Callable[[Any], dict[str, Any]], index: int) -> Callable[[Any], dict[str, Any]]:
    """`transform` (a dataset's batch transform giving per row `input_points (1, K, 2)` and `input_labels
    (1, K)`, as lists) with the clicks rotated so that click `index` comes first; the others follow in order."""

    def rotated(rows: Any) -> dict[str, Any]:
        out = transform(rows)
        out["input_points"] = [torch.roll(points, -index, dims=-2) for points in out["input_points"]]
        out["input_labels"] = [torch.roll(labels, -index, dims=-1) for labels in out["input_labels"]]
        return out

    return rotated


def mean_dice_per_first_click(model: Any, dataset: str, split: str, classes: str) -> dict[str, list[float]]:
    """Per protocol, the mean Dice over the structures `classes` names (per case, then over cases, as
    `evaluate_model` scores) with each of the evaluation's clicks of a row (ten) as the first click:
    `{protocol: [Dice per first click]}`."""
    from msa_hf.evaluation.case_scores import case_spacings, score_cases, summarise_by_class
    from msa_hf.evaluation.protocols import evaluation_tasks, predict_protocols
    from msa_hf.inference.placement import Placement

    tasks = evaluation_tasks(dataset, split, model.config.vision_config.image_size, classes=classes)
    spacing_of = case_spacings(tasks.with_format(None))
    transform = tasks.format["format_kwargs"]["transform"]
    clicks = tasks[0]["input_points"].shape[-2]  # as many as evaluation_tasks gives each row
    placement = Placement(torch.device("cpu"), torch.float32)
    out: dict[str, list[float]] = {protocol: [] for protocol in PROTOCOLS}
    for index in range(clicks):
        tasks.set_transform(first_click_at(transform, index))
        rows = list(predict_protocols(model, tasks, PROTOCOLS, placement=placement))
        for protocol in PROTOCOLS:
            predictions = [
                (case, slice_, name, masks[protocol], target) for case, slice_, name, masks, target in rows
            ]
            table = summarise_by_class(score_cases(predictions, spacing_of))
            out[protocol].append(float(np.mean([row["dice"] for row in table.values()])))
    return out


def shares(dice: dict[str, float]) -> dict[str, float]:
    """The goal's shares (`benchmarks.retention.goals`) from `{"<rule> <structures> <protocol>": Dice}`: the
    fallback is the run scored, the base its zero-shot, and the adapted model alone the run without
    retention."""
    keys = [f"{structures} {protocol}" for structures in ("adapted", "held-out") for protocol in PROTOCOLS]
    row = {f"msa {key}": dice[f"fallback {key}"] for key in keys} | {
        f"zero-shot {key}": dice[f"base {key}"] for key in keys
    }
    # the run without retention counts on the adapted structures only
    adapted = [f"adapted {protocol}" for protocol in PROTOCOLS]
    off = {f"msa {key}": dice[f"adapted {key}"] for key in adapted} | {
        f"zero-shot {key}": dice[f"base {key}"] for key in adapted
    }
    return goals(row, off)


def table(runs: dict[int, dict[str, list[float]]]) -> str:
    """Markdown: per split and seed, the four shares from the interior click and from all ten first clicks.
    `runs`: seed -> `{"<split> <rule> <structures> <protocol>": [Dice per first click]}`."""
    lines = [
        "| split | seed | first clicks | held-out kept 1 click | held-out kept iterative | gain kept 1 click "
        "| gain kept iterative | goal met |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for split in ("validation", "test"):
        for seed, run in runs.items():
            for label, pick in (("interior", lambda v: v[0]), ("all ten", np.mean)):
                dice = {
                    key.removeprefix(f"{split} "): float(pick(v))
                    for key, v in run.items()
                    if key.startswith(f"{split} ")
                }
                values = goal_shares(shares(dice))
                met = "yes" if meets_goal(values) else "no"
                cells = " | ".join(f"{v:.2f}" for v in values)
                lines.append(f"| {split} | {seed} | {label} | {cells} | {met} |")
    return "\n".join(lines)


def replay(folders: dict[int, Path], dataset: str) -> dict[int, dict[str, list[float]]]:
    """Per seed, `{"<split> <rule> <structures> <protocol>": [mean Dice per first click]}` for the fallback
    model in each folder, under each of `RULES`."""
    runs: dict[int, dict[str, list[float]]] = {}
    for seed, folder in folders.items():
        model = RuleReplay.from_pretrained(folder).eval()
        run: dict[str, list[float]] = {}
        for name, rule in RULES.items():
            model.rule = rule
            for split in ("validation", "test"):
                for structures, classes in (("adapted", CLASSES), ("held-out", HELD_OUT)):
                    for protocol, values in mean_dice_per_first_click(model, dataset, split, classes).items():
                        run[f"{split} {name} {structures} {protocol}"] = values
            print(f"[retention clicks] seed {seed} {name} done", flush=True)
        runs[seed] = run
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.retention_clicks", description=__doc__.splitlines()[0]
    )
    add_run_arguments(parser)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/retention-clicks"))
    parser.add_argument(
        "--summarise-only", action="store_true", help="no replay: the table from the Dice the last run wrote"
    )
    args = parser.parse_args(argv)
    dice_file = args.output.with_suffix(".json")
    if args.summarise_only:
        runs = {int(seed): run for seed, run in json.loads(dice_file.read_text()).items()}
    else:
        runs = replay(fallback_models(args.runs, args.seeds), args.dataset)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        dice_file.write_text(json.dumps({str(seed): run for seed, run in runs.items()}, indent=1))
    text = table(runs)
    # the header names the seeds the table shows (with --summarise-only, those of the Dice file)
    command = written_by(parser, argparse.Namespace(seeds=list(runs)), ("seeds",))
    args.output.with_suffix(".md").write_text(
        f"Written by `{command}`.\n\n"
        f"The retention goal's shares for {fallback_models_named(list(runs))}, from the interior click alone "
        "(what `make retention` scores) and from each of the ten evaluation clicks of a slice as the first click "
        "(mean Dice over the ten). The adapted model alone and the base alone are the same weights with the "
        "adapters' or the base's answer always kept.\n\n"
        f"{text}\n"
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
