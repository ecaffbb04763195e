# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`make retention`: the retention options of train.py side by side over several seeds, as a committed table.

    python -m benchmarks.retention                                  # the default grid, seeds 0 1 2
    python -m benchmarks.retention --seeds 0 --settings off replay  # a part of it
    python -m benchmarks.retention --summarise-only                 # tables from the runs already there

Every setting adapts the shipped base to `make train`'s four structures of the embedded data with the same
steps, batch and schedule; only the retention options differ. Each run is `train.py` in its own process,
written to `<runs>/<setting>-s<seed>/`; a run whose evaluation is complete is reused (delete it to redo it).

The tables report the two goals: the held-out structure (the ventricles) keeps >= 90% of its zero-shot Dice,
and the adapted structures keep >= 90% of the gain that adaptation without retention ("off", same seed) makes
over zero-shot, for one click and iterative; first each setting's worst and best seed and how many seeds meet
both, then per setting the mean over seeds of the test Dice on the adapted and held-out structures per
protocol and on the base's synthetic held-out pictures, then the goals seed by seed. docs/retention.md shows
the written file as it is (a test compares them).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# setting -> train.py flags; "off" is the paper's recipe (and today's default)
SETTINGS: dict[str, list[str]] = {
    "off": [],
    "distill": ["--distill-probability", "0.5"],
    "distill-outside": ["--distill-probability", "0.5", "--distill-outside-labels"],
    "replay": ["--replay-share", "0.25"],
    "distill+replay": ["--distill-probability", "0.5", "--replay-share", "0.25"],
    "fallback": ["--base-fallback"],
}
CLASSES = ["deep_grey_left", "deep_grey_right", "white_matter_left", "white_matter_right"]
PROTOCOLS = ("box", "points1", "iterative")
GOAL_PROTOCOLS = ("points1", "iterative")  # the protocols that say whether a prompt is followed
GOAL = 0.9
PROG = "python -m benchmarks.retention"
_EVALUATIONS = {  # (model, structures) -> the run's evaluation folder
    ("msa", "adapted"): "evaluation",
    ("zero-shot", "adapted"): "evaluation-zero-shot",
    ("msa", "held-out"): "evaluation-held-out",
    ("zero-shot", "held-out"): "evaluation-zero-shot-held-out",
}
_COLUMNS = [
    f"{structures} {protocol}"
    for structures in ("adapted", "held-out", "synthetic")
    for protocol in PROTOCOLS
]


def run_folder(runs: Path, setting: str, seed: int) -> Path:
    return runs / f"{setting}-s{seed}"


def _complete(folder: Path) -> bool:
    return (
        all((folder / name / "results.json").is_file() for name in _EVALUATIONS.values())
        and (folder / "evaluation" / "synthetic_held_out.json").is_file()
    )


def train(runs: Path, setting: str, seed: int, dataset: str, steps: int | None) -> float:
    """Runs `train.py` for one setting and seed unless its evaluation is complete; returns minutes spent."""
    folder = run_folder(runs, setting, seed)
    if _complete(folder):
        return 0.0
    command = [sys.executable, "train.py", "--base", "tiny", "--dataset", dataset, "--output-dir", str(folder),
               "--overwrite", "--log-with", "none", "--seed", str(seed), "--classes", *CLASSES, *SETTINGS[setting]]  # fmt: skip
    if steps:
        command += ["--steps", str(steps)]
    started = time.time()
    print(f"[retention] {setting} seed {seed}: {' '.join(command[1:])}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{setting} seed {seed} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    (folder / "train.log").write_text(done.stdout)
    return (time.time() - started) / 60


def _mean_dice(results_file: Path, protocol: str) -> float:
    tables = json.loads(results_file.read_text())["tables"][protocol]
    return float(np.mean([row["dice"] for row in tables.values()]))


def scores(folder: Path) -> dict[str, float]:
    """One run's figures: `<model> <structures> <protocol>` mean Dice over structures, and
    `<model> synthetic <protocol>` on the data engine's held-out pictures."""
    row: dict[str, float] = {}
    for (model, structures), name in _EVALUATIONS.items():
        for protocol in PROTOCOLS:
            row[f"{model} {structures} {protocol}"] = _mean_dice(folder / name / "results.json", protocol)
    synthetic = json.loads((folder / "evaluation" / "synthetic_held_out.json").read_text())
    for model, values in synthetic.items():
        for protocol in ("box", "points1", "iterative"):
            row[f"{model} synthetic {protocol}"] = values[protocol]
    row["train minutes"] = json.loads((folder / "train_result.json").read_text())["seconds"] / 60
    return row


def held_out_kept(value: float, zero_shot: float) -> float:
    """The held-out structure's Dice as a share of its zero-shot Dice (NaN where zero-shot scores 0)."""
    return value / zero_shot if zero_shot > 0 else float("nan")


def gain_kept(gain: float, unregularised_gain: float) -> float:
    """The adapted structures' gain over zero-shot as a share of the gain that adaptation without retention
    makes (NaN where that gain is not positive)."""
    return gain / unregularised_gain if unregularised_gain > 0 else float("nan")


def goals(row: dict[str, float], off: dict[str, float]) -> dict[str, float]:
    """Per protocol of `GOAL_PROTOCOLS`: the held-out structure's Dice as a share of its zero-shot Dice, and
    the adapted structures' gain over zero-shot as a share of the gain of the same seed without retention."""
    out = {}
    for protocol in GOAL_PROTOCOLS:
        out[f"held-out kept {protocol}"] = held_out_kept(
            row[f"msa held-out {protocol}"], row[f"zero-shot held-out {protocol}"]
        )
        out[f"gain kept {protocol}"] = gain_kept(
            row[f"msa adapted {protocol}"] - row[f"zero-shot adapted {protocol}"],
            off[f"msa adapted {protocol}"] - off[f"zero-shot adapted {protocol}"],
        )
    return out


def collect(runs: Path, settings: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    """One row per complete run (and its seed's "off" run): its scores and its goal shares (`goals`)."""
    rows = []
    for setting in settings:
        for seed in seeds:
            folder = run_folder(runs, setting, seed)
            if not _complete(folder) or not _complete(run_folder(runs, "off", seed)):
                continue
            row = {"setting": setting, "seed": seed, **scores(folder)}
            row.update(goals(row, scores(run_folder(runs, "off", seed))))
            rows.append(row)
    return rows


def summarise(runs: Path, settings: list[str], seeds: list[int]) -> tuple[str, list[dict[str, Any]]]:
    """Markdown tables and the per-run rows, from the run folders (`collect`, `tables`)."""
    rows = collect(runs, settings, seeds)
    return tables(rows, settings, seeds), rows


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """`--seeds`, `--dataset` and `--runs` with the defaults every retention benchmark shares: the seeds of the
    goal, `make train`'s data, and the folder `make retention` trains its runs into."""
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--dataset", default="data/mni152-objects")
    parser.add_argument("--runs", type=Path, default=Path("runs/retention"))


def _shell_word(value: str) -> str:
    """`value` as one word of a shell command, quoted only where the shell would split or expand it (in double
    quotes where it holds an apostrophe, which reads better than POSIX quoting's `'"'"'`)."""
    if shlex.quote(value) == value:
        return value
    if "'" in value and not any(char in value for char in '"$`\\!'):
        return f'"{value}"'
    return shlex.quote(value)


def written_by(parser: argparse.ArgumentParser, args: argparse.Namespace, options: tuple[str, ...]) -> str:
    """The command that writes a results file: `parser.prog` with those of `options` (argument names) that
    differ from their defaults, so that a file of other seeds or settings says how it was made."""
    words = [parser.prog]
    for name in options:
        value = getattr(args, name)
        if value != parser.get_default(name):
            values = value if isinstance(value, list) else [value]
            words += [f"--{name.replace('_', '-')}", *(_shell_word(str(v)) for v in values)]
    return " ".join(words)


def goal_shares(row: dict[str, Any]) -> list[float]:
    """The four goal shares of a run (`goals`' keys): held-out kept, then gain kept, each for one click and
    iterative: the order of the tables' columns."""
    return [row[f"{kind} kept {p}"] for kind in ("held-out", "gain") for p in GOAL_PROTOCOLS]


def meets_goal(shares: list[float]) -> bool:
    """Whether every share reaches `GOAL` (a NaN share does not)."""
    return all(value >= GOAL for value in shares)


def tables(rows: list[dict[str, Any]], settings: list[str], seeds: list[int]) -> str:
    """Markdown: the goal shares' worst and best seed per setting, the mean Dice per setting over seeds, and
    the goal shares per seed."""
    if not rows:
        return "No complete runs yet."

    def mean(setting: str, key: str) -> str:
        values = [r[key] for r in rows if r["setting"] == setting]
        return (
            f"{np.mean(values):.3f}" if len(values) == 1 else f"{np.mean(values):.3f} ± {np.std(values):.3f}"
        )

    def span(values: list[float]) -> str:
        low, high = f"{min(values):.2f}", f"{max(values):.2f}"
        return low if low == high else f"{low}-{high}"

    present = [s for s in settings if any(r["setting"] == s for r in rows)]
    zero = rows[0]
    seed_list = ", ".join(str(s) for s in seeds)
    lines = [
        f"Goal shares, worst and best of seeds {seed_list}: the held-out structure's Dice as a share of its "
        "zero-shot Dice, and the adapted structures' gain over zero-shot as a share of the gain without "
        f"retention (same seed). The goal is >= {GOAL:.0%} in all four on every seed.",
        "",
        "| setting | held-out kept 1 click | held-out kept iterative | gain kept 1 click | gain kept iterative "
        "| seeds meeting the goal |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for setting in present:
        runs = [goal_shares(r) for r in rows if r["setting"] == setting]
        met = sum(meets_goal(shares) for shares in runs)
        cells = [span([shares[i] for shares in runs]) for i in range(4)]
        lines.append(f"| {setting} | " + " | ".join(cells) + f" | {met} of {len(runs)} |")
    lines += [
        "",
        "Mean test Dice over the adapted structures (four) and of the held-out one (ventricles), mean ± sd over "
        f"seeds {seed_list}; the zero-shot base for reference.",
        "",
        "| setting | adapted box | adapted 1 click | adapted iterative | held-out box | held-out 1 click | "
        "held-out iterative | synthetic box | synthetic 1 click | synthetic iterative | train min |",
        "|---|" + "---:|" * 10,
        "| zero-shot base | "
        + " | ".join(f"{zero[f'zero-shot {part}']:.3f}" for part in _COLUMNS)
        + " | – |",
    ]
    for setting in present:
        cells = [mean(setting, f"msa {part}") for part in _COLUMNS] + [mean(setting, "train minutes")]
        lines.append(
            f"| {setting} ({' '.join(SETTINGS[setting]) or 'no retention'}) | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        f"Goals per seed (met when both shares are >= {GOAL:.0%} for one click and iterative): held-out Dice as a "
        "share of zero-shot, and the adapted gain over zero-shot as a share of the gain without retention.",
        "",
        "| setting | seed | held-out kept 1 click | held-out kept iterative | gain kept 1 click | gain kept iterative "
        "| goal met |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        shares = goal_shares(row)
        met = meets_goal(shares)
        lines.append(
            f"| {row['setting']} | {row['seed']} | "
            + " | ".join(f"{v:.2f}" for v in shares)
            + f" | {'yes' if met else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--steps", type=int, default=None, help="train.py's steps (default: train.py's)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/retention"))
    parser.add_argument(
        "--summarise-only", action="store_true", help="no training: tables from existing runs"
    )
    args = parser.parse_args(argv)
    settings = ["off", *[s for s in args.settings if s != "off"]]  # every goal is relative to "off"
    command = written_by(parser, args, ("seeds", "settings"))
    if not args.summarise_only:
        for seed in args.seeds:  # seed by seed, so a partial grid already compares settings
            for setting in settings:
                train(args.runs, setting, seed, args.dataset, args.steps)
                table, rows = summarise(args.runs, settings, args.seeds)
                _write(args.output, table, rows, command)
    table, rows = summarise(args.runs, settings, args.seeds)
    _write(args.output, table, rows, command)
    print(table)
    return 0


def _write(output: Path, table: str, rows: list[dict[str, Any]], command: str) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    target = " (`make retention`)" if command == PROG else ""  # the default grid is the make target's
    output.with_suffix(".md").write_text(f"Written by `{command}`{target}.\n\n{table}\n")
    if rows:
        with output.with_suffix(".csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
