# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Storing DICOM objects over DICOMweb (STOW-RS): what cloud and web PACS take where a classic DICOM node
takes C-STORE (Orthanc's DICOMweb plugin, dcm4chee, Google's Healthcare API, Azure's DICOM service).

A service is named by its DICOMweb root URL (`https://pacs.example.org/dicom-web`); the files are POSTed to
`<root>/studies` as `multipart/related; type="application/dicom"` requests, as PS3.18 defines them, up to
64 MB each. A bearer
token, where the service asks for one, comes from the environment (`MSA_HF_DICOMWEB_TOKEN`), never the command
line, which shells keep in their history. Needs httpx, which huggingface_hub brings.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from pathlib import Path

TOKEN_VARIABLE = "MSA_HF_DICOMWEB_TOKEN"
FAILED_SOP_SEQUENCE = "00081198"  # a STOW-RS response's Failed SOP Sequence (DICOM JSON)
REQUEST_BYTES = 64 * 2**20  # files per request up to this size, so a batch is not held in memory whole


@dataclasses.dataclass(frozen=True)
class DicomWebService:
    """A DICOMweb service by its root URL (the part before `/studies`)."""

    url: str

    def __str__(self) -> str:
        return self.url


def is_dicomweb_url(text: str) -> bool:
    """Whether a destination names a DICOMweb service (an http or https URL) rather than a DICOM node."""
    return text.strip().lower().startswith(("http://", "https://"))


def parse_dicomweb_service(text: str, flag: str) -> DicomWebService:
    """A service named by its DICOMweb root URL (`https://host/dicom-web`; a trailing `/studies` is taken as
    the root's), or a `ValueError` naming the `flag` it came with."""
    import httpx

    url = text.strip().rstrip("/")
    url = url[: -len("/studies")] if url.lower().endswith("/studies") else url
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(f"{flag} {text!r}: not a URL ({error}); give the DICOMweb root, such as "
                         "https://pacs.example.org/dicom-web.") from None  # fmt: skip
    if not parsed.host:
        raise ValueError(
            f"{flag} {text!r}: a DICOMweb URL names its host, such as https://pacs.example.org/dicom-web."
        )
    return DicomWebService(url)


def store_over_dicomweb(paths: list[Path], service: DicomWebService, timeout: float) -> int:
    """POST the DICOM files `paths` to `service`'s `/studies` in STOW-RS requests of at most
    `REQUEST_BYTES` each (one file at least), so a large batch is never held in memory at once. Returns how
    many it stored. Raises `DicomSendError` naming the service and why: nothing answering, credentials refused
    (a bearer token in `TOKEN_VARIABLE`), or files it did not store (the response's failures), with how many
    went before."""
    from msa_hf.inference.dicom_send import DicomSendError, kept_files

    stored = 0
    for group in _requests(paths):
        try:
            stored += _post(group, service, timeout)
        except DicomSendError as error:
            sent = f"{stored} of {len(paths)} sent before" if stored else "nothing sent"
            raise DicomSendError(f"{error}; {sent}, {kept_files(paths)}.") from None
    return stored


def _requests(paths: list[Path]) -> list[list[Path]]:
    """`paths` in groups of at most `REQUEST_BYTES` (a larger file alone)."""
    groups: list[list[Path]] = [[]]
    size = 0
    for path in paths:
        length = path.stat().st_size
        if groups[-1] and size + length > REQUEST_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += length
    return groups


def _post(paths: list[Path], service: DicomWebService, timeout: float) -> int:
    """One STOW-RS request of the files `paths`; how many were stored, or `DicomSendError` saying why not."""
    import httpx

    from msa_hf.inference.dicom_send import DicomSendError

    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + path.read_bytes() + b"\r\n"
            for path in paths
        )
        + f"--{boundary}--\r\n".encode()
    )
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    if token := os.environ.get(TOKEN_VARIABLE, "").strip():
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = httpx.post(f"{service.url}/studies", content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as failure:
        raise DicomSendError(
            f"DICOMweb service {service}: nothing answers there ({type(failure).__name__}: {failure})"
        ) from None
    failed = _failed_count(response)
    if response.status_code == 200 or (response.status_code == 202 and failed == 0):
        return len(paths)
    if response.status_code in (401, 403):
        why = (f"it refused the credentials (HTTP {response.status_code}); put its bearer token in "
               f"{TOKEN_VARIABLE}")  # fmt: skip
    elif response.status_code == 202:
        why = f"it stored {len(paths) - failed} of a request's {len(paths)} (HTTP 202, {failed} refused)"
    else:
        why = f"it stored none of a request's {len(paths)} (HTTP {response.status_code} {response.reason_phrase})"
    raise DicomSendError(f"DICOMweb service {service}: {why}")


def _failed_count(response) -> int:
    """How many instances a STOW-RS response lists as failed (its Failed SOP Sequence), 0 where it lists none
    or its body is not DICOM JSON."""
    try:
        answer = json.loads(response.content or b"{}")
    except ValueError:
        return 0
    answer = answer[0] if isinstance(answer, list) and answer else answer
    if not isinstance(answer, dict):
        return 0
    return len((answer.get(FAILED_SOP_SEQUENCE) or {}).get("Value") or [])
