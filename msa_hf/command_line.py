# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The conventions every msa_hf command follows, in one parser class.

- `--help` shows each option's default.
- Options are spelled with dashes (`--output-dir`) and also accepted with underscores (`--output_dir`), as
  transformers' example scripts accept them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


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

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.help is None and action.option_strings:  # argparse prints no help line, so no default
            action.help = ""
            if action.default not in (None, False, argparse.SUPPRESS):
                action.help = "(default: %(default)s)"
        return action

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None):
        if args is not None:
            args = [self._dashed(arg) for arg in args]
        return super().parse_known_args(args, namespace)

    def _dashed(self, arg: str) -> str:
        """`--output_dir[=x]` -> `--output-dir[=x]` when this parser knows the dashed spelling."""
        if not arg.startswith("--") or "_" not in arg:
            return arg
        name, equals, value = arg.partition("=")
        dashed = name.replace("_", "-")
        return dashed + equals + value if dashed in self._option_string_actions else arg
