# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Sending the DICOM objects `predict` writes to a DICOM node: a PACS, a viewer, or the import node of a
radiotherapy planning system, as clinics move every image and result (DICOM C-STORE over the network).

A node is named as `AE_TITLE@HOST:PORT` (`parse_dicom_node`), the way DICOM nodes are configured: the
application entity title the receiver answers to, its host and its port (104 or 11112 by convention). A web
or cloud PACS is named by its DICOMweb URL instead, and takes the files over HTTP (`dicomweb_store`). The
files are written first and stay where they are; sending is a copy, so a node that cannot be reached loses
nothing, and `msa-hf send` sends them again. Needs `pynetdicom` (the `dicom` extra).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEFAULT_CALLING_AE = "MSA_HF"  # the title msa_hf calls from; nodes that admit callers by title must know it
DEFAULT_TIMEOUT_S = 30.0
_NODE = re.compile(r"^(?P<ae>[^@]+)@(?P<host>\[[^\]]+\]|[^:@\[\]]+):(?P<port>\d+)$")


class DicomSendError(OSError):
    """A DICOM node that cannot be reached, refuses the files, or fails to store one; the message names the
    node, what went wrong and that the files are kept."""


@dataclasses.dataclass(frozen=True)
class DicomNode:
    """A DICOM node: the AE title it answers to, its host and its port."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"


def check_ae_title(title: str, what: str) -> str:
    """`title` as an application entity title (1 to 16 characters of printable ASCII, no backslash, not only
    spaces), or a `ValueError` naming `what` it is for."""
    if not (
        0 < len(title) <= 16
        and title.strip()
        and title.isascii()
        and title.isprintable()
        and "\\" not in title
    ):
        raise ValueError(
            f"{what} {title!r}: an AE title is 1 to 16 characters of plain ASCII without a backslash (such as "
            "PACS or TPS_IMPORT), as the receiving node is configured."
        )
    return title


def parse_dicom_node(text: str, flag: str = "--send-to") -> DicomNode:
    """A node given as `AE_TITLE@HOST:PORT` (`PACS@10.0.0.5:104`, `ORTHANC@localhost:4242`, an IPv6 host in
    brackets), or a `ValueError` naming the `flag` it came with and saying the form."""
    match = _NODE.match(text.strip())
    port = int(match["port"]) if match else 0
    if match is None or not 0 < port < 65536:
        raise ValueError(
            f"{flag} {text!r}: name the DICOM node as AE_TITLE@HOST:PORT, the receiver's AE title, host and "
            "port as it is configured (such as PACS@10.0.0.5:104)."
        )
    check_ae_title(match["ae"], f"{flag}'s AE title")
    return DicomNode(match["ae"], match["host"].strip("[]"), port)


def import_pynetdicom():
    """pynetdicom, or an error saying what needs it and how to install it."""
    try:
        import pynetdicom
    except ImportError as error:
        raise ValueError(
            'sending DICOM objects to a node needs pynetdicom: pip install "msa_hf[dicom]".'
        ) from error
    return pynetdicom


def dicom_files_in(paths: Iterable[str | Path]) -> list[Path]:
    """The DICOM files among `paths`, and in the folders among them (not their sub-folders, nor a DICOMDIR):
    what `msa-hf send` sends. Raises `ValueError` naming a path that does not exist or a folder without one."""
    from msa_hf.data.image_files import is_dicom_file

    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(
                p for p in path.iterdir() if p.is_file() and p.name.upper() != "DICOMDIR" and is_dicom_file(p)
            )  # a DICOMDIR indexes an export's files; it is not an object a node stores
            if not inside:
                raise ValueError(f"{path}: no DICOM file in this folder to send.")
            found += inside
        elif path.is_file() and is_dicom_file(path):
            found.append(path)
        else:
            raise ValueError(
                f"{path}: {'not a DICOM file' if path.exists() else 'no such file'}; nothing sent."
            )
    return found


def parse_destination(text: str, flag: str = "--send-to") -> DicomNode | Any:
    """Where to send: a DICOM node `AE_TITLE@HOST:PORT` (`parse_dicom_node`), or a DICOMweb service by its
    root URL (`dicomweb_store.parse_dicomweb_service`); a `ValueError` naming `flag` otherwise."""
    from msa_hf.inference.dicomweb_store import is_dicomweb_url, parse_dicomweb_service

    return parse_dicomweb_service(text, flag) if is_dicomweb_url(text) else parse_dicom_node(text, flag)


def kept_files(paths: list[Path]) -> str:
    """What a failed send says of the files: that they are kept, naming the first."""
    return f"the files are kept ({', '.join(p.name for p in paths[:3])}{' ...' if len(paths) > 3 else ''})"


def send_dicom_files(
    paths: Iterable[str | Path],
    destination: Any,
    calling_ae: str = DEFAULT_CALLING_AE,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> int:
    """Store the DICOM files `paths` at `destination` (`parse_destination`): on a DICOM node over one
    association (C-STORE, calling as `calling_ae`), or on a DICOMweb service in one STOW-RS request
    (`dicomweb_store.store_over_dicomweb`). Returns how many were stored.

    Raises:
        DicomSendError: the destination cannot be reached or refuses the files (naming why: a title it does
            not know, a kind of object it does not take, credentials), or a file is not stored. The files are
            kept either way.
    """
    from msa_hf.inference.dicomweb_store import DicomWebService, store_over_dicomweb

    paths = [Path(p) for p in paths]
    if isinstance(destination, DicomWebService):
        return store_over_dicomweb(paths, destination, timeout)
    return _store_on_node(paths, destination, calling_ae, timeout)


def _store_on_node(paths: list[Path], node: DicomNode, calling_ae: str, timeout: float) -> int:
    """`send_dicom_files` to a DICOM node: one association, a C-STORE per file."""
    pynetdicom = import_pynetdicom()
    import pydicom
    from pydicom.uid import ImplicitVRLittleEndian  # DICOM's default, for a file that names no syntax

    check_ae_title(calling_ae, "--calling-ae")
    datasets = [pydicom.dcmread(path) for path in paths]
    entity = pynetdicom.AE(ae_title=calling_ae)
    entity.acse_timeout = entity.dimse_timeout = entity.network_timeout = timeout
    entity.connection_timeout = timeout
    for sop_class, syntax in dict.fromkeys(
        (str(ds.SOPClassUID), str(ds.file_meta.get("TransferSyntaxUID", ImplicitVRLittleEndian)))
        for ds in datasets
    ):
        entity.add_requested_context(sop_class, syntax)
    kept = kept_files(paths)
    try:  # told apart from a refusal: nothing listening there at all
        socket.create_connection((node.host, node.port), timeout=timeout).close()
    except OSError as error:
        raise DicomSendError(
            f"DICOM node {node}: nothing answers there ({error.strerror or error}: the host, the port, or a "
            f"firewall); nothing sent, {kept}."
        ) from None
    # pynetdicom logs every refusal and abort itself; this says them once, in the error
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    association = entity.associate(node.host, node.port, ae_title=node.ae_title)
    if not association.is_established:
        if association.is_rejected:
            why = (
                f"it refused the association (a called AE title {node.ae_title!r} or a calling one "
                f"{calling_ae!r} it does not admit)"
            )
        elif association.rejected_contexts and not association.accepted_contexts:
            kinds = sorted({str(context.abstract_syntax.name) for context in association.rejected_contexts})
            why = f"it does not take {' or '.join(kinds)} objects"
        else:
            why = (
                "it closed the connection without a DICOM answer (a service there that is not a DICOM node?)"
            )
        raise DicomSendError(f"DICOM node {node}: {why}; nothing sent, {kept}.")
    stored = 0
    try:
        for path, dataset in zip(paths, datasets, strict=True):
            if not any(
                context.abstract_syntax == dataset.SOPClassUID for context in association.accepted_contexts
            ):
                raise DicomSendError(
                    f"DICOM node {node}: it does not take {dataset.SOPClassUID.name} objects ({path.name}); "
                    f"{stored} of {len(paths)} sent, {kept}."
                )
            status = association.send_c_store(dataset)
            code = int(status.Status) if status and "Status" in status else None
            if code is None or code not in (
                0x0000,
                0xB000,
                0xB007,
                0xB006,
            ):  # success, or stored with a warning
                reason = "no answer" if code is None else f"status 0x{code:04X}"
                raise DicomSendError(
                    f"DICOM node {node}: {path.name} was not stored ({reason}); {stored} of {len(paths)} sent, {kept}."
                )
            stored += 1
    finally:
        if association.is_established:
            association.release()
    return stored
