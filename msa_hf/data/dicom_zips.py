# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""A zip of DICOM files, as a PACS or a viewer exports a series or a study (files often without a `.dcm`
suffix, in folders, beside a DICOMDIR or a README), unpacked into a folder that the DICOM readers read.

Members are written by number (`00000.dcm`, ...), never by the names inside the archive, so no archive writes
outside its folder; members that are no DICOM file are passed over; the members and bytes unpacked are
bounded (a zip bomb stops at the limit, declared or found while reading). `msa-hf predict` takes such a zip
as its input (`unpacked_zip`), and the demo a visitor's upload.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# what `msa-hf predict` unpacks at most: a study of several series is a few GB
MAX_ZIP_BYTES = 16 * 1024**3
MAX_ZIP_FILES = 100_000


def is_zip(path: str | Path) -> bool:
    """Whether `path` is named as a zip archive (the user chose to give one)."""
    return Path(path).suffix.lower() == ".zip"


def unpack_dicom_zip(
    path: str | Path,
    folder: Path,
    first: int = 0,
    max_files: int = MAX_ZIP_FILES,
    max_bytes: int = MAX_ZIP_BYTES,
    limits_of: str = "msa-hf",
) -> int:
    """Copy the DICOM files in the zip at `path` into `folder` as `<n>.dcm` from `first` on (see the module
    docstring); returns how many were copied. `limits_of` names whose limits `max_files` and `max_bytes` are,
    for the message.

    Raises:
        ValueError: not a readable zip, more than `max_files` members, more than `max_bytes` unpacked, or a
            member that cannot be unpacked (damaged, or encrypted).
    """
    import zipfile

    from msa_hf.data.image_files import has_dicom_marker

    name = Path(path).name
    too_large = f"{limits_of} takes up to {max_files:,} files and {max_bytes / 1024**3:.0f} GB: zip one series or study."
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(
            f"{name}: not a readable zip archive ({error}); zip the DICOM folder again."
        ) from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
        declared = sum(member.file_size for member in members)
        if len(members) > max_files or declared > max_bytes:
            raise ValueError(
                f"{name}: {len(members):,} files, {declared / 1024**3:.1f} GB unpacked; {too_large}"
            )
        copied, unpacked = 0, 0
        for member in members:
            target = folder / f"{first + copied:05d}.dcm"
            try:
                with archive.open(member) as source, target.open("wb") as sink:
                    # counted as read: a member may claim less than it holds
                    while chunk := source.read(1 << 20):
                        unpacked += len(chunk)
                        if unpacked > max_bytes:
                            raise ValueError(
                                f"{name}: more than {max_bytes / 1024**3:.0f} GB unpacked; {too_large}"
                            )
                        sink.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as error:  # RuntimeError: encrypted
                raise ValueError(
                    f"{name}: {member.filename} cannot be unpacked ({error}); zip the DICOM folder again, without a "
                    "password."
                ) from None
            if has_dicom_marker(target) or Path(member.filename).suffix.lower() in (".dcm", ".dicom"):
                copied += 1
            else:
                target.unlink()
    return copied


def no_dicom_message(name: str) -> str:
    """What is said of a zip (or zips, `name`) that holds no DICOM file."""
    return f"{name}: no DICOM file in the zip; zip the folder of a DICOM series."


@contextmanager
def unpacked_zip(path: str | Path) -> Iterator[Path]:
    """The DICOM files of the zip at `path` in a temporary folder (`unpack_dicom_zip`), removed afterwards.

    Raises:
        ValueError: as `unpack_dicom_zip`, or a zip that holds no DICOM file.
    """
    folder = Path(tempfile.mkdtemp(prefix="msa-zip-"))
    try:
        if not unpack_dicom_zip(path, folder):
            raise ValueError(no_dicom_message(Path(path).name))
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
