# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The conventions every msa_hf command follows, in one parser class.

- `--help` shows each option's default.
- Options are spelled with dashes (`--output-dir`) and also accepted with underscores (`--output_dir`), as
  transformers' example scripts accept them.
- One spelling per concept across commands: where a command writes a folder it is `--output-dir`, replacing
  an existing output is `--overwrite`, lists are space-separated (a comma-separated item is split too).
  Older spellings keep working for one release and print a one-line deprecation notice.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

LEGACY_OUTPUT = "legacy_output"


class DefaultsShownFormatter(argparse.RawDescriptionHelpFormatter):
    """Help text with "(default: ...)" after every option that has a default worth naming."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "%(default)" in text or "(default" in text:
            return text  # positional, or the help already says what the default is
        if action.default in (None, argparse.SUPPRESS, False) or isinstance(action, argparse._HelpAction):
            return text
        return f"{text} (default: %(default)s)".strip()


class CommandParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` with the conventions above; sub-commands get the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsShownFormatter)
        super().__init__(*args, **kwargs)
        self.renamed: dict[str, str] = {}  # old option spelling -> the current one
        self.output_required = False
        self.output_default: str | None = None

    def rename(self, old: str, new: str) -> None:
        """Accept `old` (an option spelling of an earlier release) as `new`, with a deprecation notice."""
        self.renamed[old] = new

    def add_output_dir(
        self, help: str, default: str | None = None, required: bool = True, positional: bool = False
    ) -> None:
        """`--output-dir` (into `args.output`). `positional`: the earlier release took the output as a
        trailing positional argument, still accepted with a notice."""
        self.add_argument("--output-dir", dest="output", default=default, help=help)
        self.output_required = required and default is None
        self.output_default = default
        if positional:
            self.add_argument(LEGACY_OUTPUT, nargs="?", default=None, help=argparse.SUPPRESS)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.help is None and action.option_strings:  # argparse prints no help line, so no default
            action.help = ""
            if action.default not in (None, False, argparse.SUPPRESS):
                action.help = "(default: %(default)s)"
        return action

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None):
        if args is not None:
            args = [self._renamed(self._dashed(arg)) for arg in args]
        namespace, extras = super().parse_known_args(args, namespace)
        legacy = getattr(namespace, LEGACY_OUTPUT, None)
        if legacy is not None:
            if getattr(namespace, "output", None) in (None, self.output_default):
                self._notice(f"the output as a positional argument is now --output-dir {legacy}")
                namespace.output = legacy
            else:
                self.error(f"unexpected argument {legacy!r} (the output goes to --output-dir)")
        if hasattr(namespace, LEGACY_OUTPUT):
            delattr(namespace, LEGACY_OUTPUT)
        if self.output_required and getattr(namespace, "output", None) is None:
            self.error("the following arguments are required: --output-dir")
        return namespace, extras

    def _notice(self, text: str) -> None:
        print(
            f"{self.prog}: deprecated: {text}; the old form will be removed in the next release.",
            file=sys.stderr,
        )

    def _renamed(self, arg: str) -> str:
        name, equals, value = arg.partition("=")
        if name in self.renamed:
            self._notice(f"{name} is now {self.renamed[name]}")
            return self.renamed[name] + equals + value
        return arg

    def _dashed(self, arg: str) -> str:
        """`--output_dir[=x]` -> `--output-dir[=x]` when this parser knows the dashed spelling."""
        if not arg.startswith("--") or "_" not in arg:
            return arg
        name, equals, value = arg.partition("=")
        dashed = name.replace("_", "-")
        return dashed + equals + value if dashed in self._option_string_actions else arg


def label_remap(pairs: list[str] | None) -> dict[str, str] | None:
    """`--remap-labels 255=0 0=2` as `{"255": "0", "0": "2"}` (the values checked where it is used,
    `label_tables.check_label_remap`)."""
    if pairs is None:
        return None
    remap = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or source.strip() in remap:
            raise ValueError(
                f"--remap-labels {pair}: give each value once as FROM=TO, e.g. --remap-labels 255=0 128=1 0=2."
            )
        remap[source.strip()] = target.strip()
    return remap


def space_or_comma_list(items: Sequence[str] | None) -> list[str] | None:
    """A space-separated list option's values with comma-separated items split too (the older spelling)."""
    if items is None:
        return None
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


DEBUG_FLAG = "--debug"
DEBUG_HELP = "on an error, show the full traceback instead of the one-line message"


def split_debug_flag(argv: Sequence[str]) -> tuple[list[str], bool]:
    """`argv` without `--debug`, and whether it was given (or `MSA_HF_DEBUG=1` is set)."""
    import os

    rest = [arg for arg in argv if arg != DEBUG_FLAG]
    return rest, len(rest) != len(argv) or os.environ.get("MSA_HF_DEBUG", "") not in ("", "0")


def error_boundary(prog: str, run: Any, argv: Sequence[str]) -> int:
    """Run `run(argv without --debug)` as an entry point: every error becomes one line on stderr and an exit
    status, never a traceback (unless `--debug`).

    Errors about the user's input or environment (a bad value, a missing or unreadable file, a model that
    cannot load) print their own message, which names the input and the fix; any other exception is a bug in
    msa_hf and says so. Outputs are written whole or not at all, so an error leaves nothing half-written.
    """
    from msa_hf.training.base_loading import BaseLoadError

    argv, debug = split_debug_flag(argv)
    try:
        return run(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted; every output already written is complete.", file=sys.stderr)
        return 130
    except (ValueError, OSError, BaseLoadError) as error:
        if debug:
            raise
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    except MemoryError:
        if debug:
            raise
        print(
            f"{prog}: out of memory; use a smaller input, batch or model (see docs/data.md).", file=sys.stderr
        )
        return 2
    except Exception as error:  # noqa: BLE001 - the boundary's job is to catch what nothing else did
        if debug:
            raise
        print(
            f"{prog}: unexpected error ({type(error).__name__}: {error}). This is a bug in msa_hf: rerun with "
            f"{DEBUG_FLAG} for the traceback and report it.",
            file=sys.stderr,
        )
        return 1


def positive_int(text: str) -> int:
    """An argparse `type` for counts and sizes: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != text.strip().lstrip("+"):
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value
