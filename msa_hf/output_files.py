# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The one way msa_hf writes its outputs: complete or not at all, and never over an input.

Every command that writes a file or a folder (prepare, predict, evaluate, the trained model, push's
staging) goes through `atomic_file` / `atomic_folder`: the output is written to a temporary sibling and
renamed into place when complete, an earlier output is removed only after the new one is in place, and an
output that is one of the command's inputs, lies inside one, or holds one is refused before anything runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputError(ValueError):
    """An output that would overwrite or delete an input, or that cannot be written where asked."""


def check_not_an_input(output: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuses an `output` that is one of `inputs`, lies inside one, or contains one (replacing it would
    delete that input).

    Raises:
        OutputError: naming the output, the input, and what to do.
    """
    out = Path(output).resolve()
    for given in inputs:
        source = Path(given).resolve()
        if out == source:
            raise OutputError(f"output {output} is the input {given}; write to another path.")
        if source in out.parents:
            raise OutputError(f"output {output} lies inside the input {given}; write outside it.")
        if out in source.parents:
            raise OutputError(
                f"output {output} contains the input {given}; replacing it would delete the input. "
                "Write to another folder."
            )


def check_new_outputs(outputs: Iterable[str | Path], overwrite: bool) -> None:
    """Refuses outputs that exist already (a file, or a folder that is not empty) unless `overwrite`: an
    earlier result, or a file of the user's that sits at the path given, is replaced only when asked.

    Raises:
        FileExistsError: naming the outputs that exist (the first three) and the fix.
    """
    paths = [Path(p) for p in outputs]
    existing = [p for p in paths if p.is_file() or (p.is_dir() and any(p.iterdir()))]
    if not existing or overwrite:
        return
    if len(existing) == 1:
        what = f"{existing[0]} exists{' and is not empty' if existing[0].is_dir() else ''}"
        raise FileExistsError(f"{what}; pass --overwrite to replace it, or write elsewhere.")
    more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
    raise FileExistsError(
        f"{', '.join(str(p) for p in existing[:3])}{more} exist; pass --overwrite to replace them, or write "
        "elsewhere."
    )


def _apply_umask(path: Path, mode: int) -> None:
    # mkdtemp / mkstemp create private (0700 / 0600) entries; an output gets the user's usual permissions
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextmanager
def atomic_folder(
    output: str | Path, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Iterator[Path]:
    """Yields an empty staging folder beside `output`; on success it becomes `output` (an earlier `output`
    is removed only then), on any error it is removed and `output` is left as it was.

    Raises:
        FileExistsError: `output` is a non-empty folder and not `overwrite` (`check_new_outputs`).
        OutputError: `output` is a file, or is / lies inside / contains one of `inputs`.
    """
    output = Path(output)
    check_not_an_input(output, inputs)
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output} is a file; give a folder path for this output.")
    check_new_outputs([output], overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    _apply_umask(staging, 0o777)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = None
    if output.exists():
        previous = output.with_name(f".{output.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(output, previous)
    os.replace(staging, output)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


@contextmanager
def atomic_file(output: str | Path, inputs: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Yields a temporary path beside `output` with the same suffixes (so writers that choose a format by
    extension still do); on success it replaces `output`, on any error it is removed.

    Raises:
        OutputError: `output` is a folder, or is / lies inside / contains one of `inputs`.
    """
    output = Path(output)
    check_not_an_input(output, inputs)
    if output.is_dir():
        raise OutputError(f"{output} is a folder; give a file path for this output.")
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{output.name}.partial-", suffix="".join(output.suffixes[-2:]), dir=output.parent
    )
    os.close(handle)
    staging = Path(name)
    _apply_umask(staging, 0o666)
    try:
        yield staging
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, output)
