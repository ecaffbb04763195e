# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Sending results to a DICOM node (`--send-to`, `msa-hf send`): a storage node run in this process (as a
PACS or a planning system's import node runs one) receives the objects `predict` wrote, element for element;
a node that refuses, is absent, or takes no such objects gives an error naming it, with every file kept. A
stand-in model whose masks are the prompt boxes filled gives masks known in advance."""

from __future__ import annotations

import numpy as np
import pytest

from msa_hf.testing import BoxFillSam

pytest.importorskip("pynetdicom")
pytest.importorskip("highdicom")

BOX = ["--slice", "2", "--box", "2", "2", "19", "15"]  # a box on the block of `block_series`


def _predict(series, output, *more: str) -> list[str]:
    """`msa-hf predict` of `series` into `output` with `BOX`, served by the stand-in, and `more` arguments."""
    return ["predict", "m", str(series), str(output), *BOX, *more]


class StorageNode:
    """A DICOM storage node on localhost answering to `ae_title`, keeping what it receives; `takes` the SOP
    classes it accepts (default: segmentations and RT structure sets)."""

    def __init__(self, ae_title: str = "TPS", takes: tuple[str, ...] | None = None) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import RTStructureSetStorage, SegmentationStorage

        self.received: list = []
        entity = AE(ae_title=ae_title)
        entity.require_called_aet = True
        for sop_class in takes or (RTStructureSetStorage, SegmentationStorage):
            entity.add_supported_context(sop_class)
        self.server = entity.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )
        self.port = self.server.server_address[1]

    def _store(self, event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        self.received.append(dataset)
        return 0x0000

    def close(self) -> None:
        """Stop answering (once: a node already closed stays so)."""
        if self.server is not None:
            self.server.shutdown()
            self.server = None


@pytest.fixture
def node():
    running = StorageNode()
    yield running
    running.close()


@pytest.fixture
def series(block_series):
    return block_series


def _same_object(received, path) -> bool:
    """Whether a received dataset is the file at `path`, element for element."""
    import pydicom

    written = pydicom.dcmread(path)
    return received.SOPInstanceUID == written.SOPInstanceUID and all(
        received[element.tag].value == element.value for element in written if element.tag != 0x7FE00010
    ) and (
        "PixelData" not in written or received.PixelData == written.PixelData
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["seg", "rtstruct"])
def test_predict_sends_what_it_wrote(series, tmp_path, node, serve_stand_in, capsys, kind):
    """`predict ... out.dcm --send-to TPS@127.0.0.1:PORT`: the node receives the file written, whole."""
    from msa_hf.cli import main

    serve_stand_in(BoxFillSam(32))
    argv = _predict(series, tmp_path / "out.dcm", "--name", "liver", "--dicom-output", kind, "--send-to",
                    f"TPS@127.0.0.1:{node.port}")  # fmt: skip
    assert main(argv) == 0
    assert f"sent: 1 DICOM object to TPS@127.0.0.1:{node.port}" in capsys.readouterr().out
    (received,) = node.received
    assert _same_object(received, tmp_path / "out.dcm")


def test_a_volume_report_is_sent_with_its_segmentation(series, tmp_path, serve_stand_in, capsys):
    """`--volume-report r.dcm --send-to`: the node receives the DICOM-SEG and the report, each whole."""
    from pynetdicom.sop_class import Comprehensive3DSRStorage, SegmentationStorage

    from msa_hf.cli import main

    serve_stand_in(BoxFillSam(32))
    running = StorageNode(takes=(SegmentationStorage, Comprehensive3DSRStorage))
    try:
        argv = _predict(series, tmp_path / "out.dcm", "--name", "liver", "--volume-report", str(tmp_path / "r.dcm"),
                        "--send-to", f"TPS@127.0.0.1:{running.port}")  # fmt: skip
        assert main(argv) == 0
    finally:
        running.close()
    assert "sent: 2 DICOM objects" in capsys.readouterr().out
    segmentation, report = running.received
    assert _same_object(segmentation, tmp_path / "out.dcm") and _same_object(report, tmp_path / "r.dcm")


def test_many_inputs_send_each_dicom_object_over_one_association(tmp_path, node, serve_stand_in, capsys):
    """A batch of two DICOM series with `--dicom-output rtstruct --send-to`: both structure sets arrive, each
    the file written, whole."""
    from msa_hf.cli import main
    from msa_hf.testing import write_dicom_series

    for name in ("p1", "p2"):
        write_dicom_series(tmp_path / "in" / name, np.full((6, 20, 24), 60.0, np.float32))
    serve_stand_in(BoxFillSam(32))
    argv = _predict(tmp_path / "in" / "*", tmp_path / "out", "--dicom-output", "rtstruct", "--send-to",
                    f"TPS@127.0.0.1:{node.port}")  # fmt: skip
    assert main(argv) == 0
    assert "sent: 2 DICOM objects" in capsys.readouterr().out
    written = sorted((tmp_path / "out").glob("*.dcm"))
    assert len(written) == len(node.received) == 2
    for path in written:
        assert sum(_same_object(received, path) for received in node.received) == 1, path


def test_send_sends_files_and_folders_again(series, tmp_path, node, serve_stand_in, capsys):
    """`msa-hf send FILE FOLDER --to NODE`: what predict wrote earlier, the folder's DICOM files among others
    (not its DICOMDIR)."""
    from msa_hf.cli import main

    serve_stand_in(BoxFillSam(32))
    assert main(_predict(series, tmp_path / "a.dcm")) == 0
    (tmp_path / "more").mkdir()
    assert main(_predict(series, tmp_path / "more" / "b.dcm", "--dicom-output", "rtstruct")) == 0
    (tmp_path / "more" / "notes.txt").write_text("not DICOM")
    index = (tmp_path / "a.dcm").read_bytes()
    (tmp_path / "more" / "DICOMDIR").write_bytes(index)  # an export's index: not sent
    capsys.readouterr()
    node_name = f"TPS@127.0.0.1:{node.port}"
    assert main(["send", str(tmp_path / "a.dcm"), str(tmp_path / "more"), "--to", node_name]) == 0
    assert "sent: 2 DICOM objects" in capsys.readouterr().out
    assert [ds.Modality for ds in node.received] == ["SEG", "RTSTRUCT"]
    assert _same_object(node.received[0], tmp_path / "a.dcm")
    assert _same_object(node.received[1], tmp_path / "more" / "b.dcm")


@pytest.mark.parametrize("problem", ["wrong title", "nothing there", "takes no such objects"])
def test_a_node_that_cannot_take_them_is_named_and_the_files_kept(
    series, tmp_path, serve_stand_in, capsys, problem
):
    """The error names the node and why, says the file is kept and how to send it again; the file is whole."""
    import pydicom
    from pynetdicom.sop_class import CTImageStorage

    from msa_hf.cli import main

    running = StorageNode(takes=(CTImageStorage,) if problem == "takes no such objects" else None)
    port = running.port
    if problem == "nothing there":
        running.close()
    title = "WRONG" if problem == "wrong title" else "TPS"
    serve_stand_in(BoxFillSam(32))
    try:
        assert main(_predict(series, tmp_path / "out.dcm", "--send-to", f"{title}@127.0.0.1:{port}")) == 2
    finally:
        running.close()
    message = capsys.readouterr().err
    reason = {"wrong title": "refused the association", "nothing there": "nothing answers there",
              "takes no such objects": "does not take Segmentation Storage"}[problem]  # fmt: skip
    assert f"{title}@127.0.0.1:{port}" in message and reason in message, message
    assert (
        "kept" in message and f"msa-hf send {tmp_path / 'out.dcm'} --to {title}@127.0.0.1:{port}" in message
    )
    assert pydicom.dcmread(tmp_path / "out.dcm").Modality == "SEG" and not running.received


@pytest.mark.parametrize(
    ("argv_tail", "words"),
    [
        (["--send-to", "PACS@host"], "AE_TITLE@HOST:PORT"),
        (["--send-to", "PACS@host:70000"], "AE_TITLE@HOST:PORT"),
        (["--send-to", "A_TITLE_FAR_TOO_LONG@host:104"], "1 to 16 characters"),
        (["--send-to", "PACS@host:104", "--calling-ae", "BACK\\SLASH"], "--calling-ae"),
    ],
)
def test_a_badly_named_node_is_refused_before_the_model_loads(series, tmp_path, capsys, argv_tail, words):
    from msa_hf.cli import main

    argv = _predict(series, tmp_path / "out.dcm", *argv_tail)
    argv[1] = "no-such-model"  # refused before any model is looked for
    assert main(argv) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out.dcm").exists()


def test_a_mask_that_is_not_dicom_is_not_sent(series, tmp_path, capsys):
    from msa_hf.cli import main

    argv = _predict(series, tmp_path / "out.nii.gz", "--send-to", "PACS@127.0.0.1:104")
    argv[1] = "no-such-model"  # refused before any model is looked for
    assert main(argv) == 2
    assert "takes DICOM objects" in capsys.readouterr().err


class DicomWebServer:
    """A DICOMweb service on localhost that takes STOW-RS requests at `/dicom-web/studies`, keeping each part's
    bytes and headers; `status` is what it answers (a `409` refuses all) with the DICOM JSON `answer`, `token`
    the bearer token it wants."""

    def __init__(self, status: int = 200, token: str | None = None, answer: bytes = b"{}") -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.parts: list[bytes] = []
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append({"path": self.path, **dict(self.headers)})
                wanted = f"Bearer {token}" if token else None
                if wanted and self.headers.get("Authorization") != wanted:
                    self.send_response(401)
                    self.end_headers()
                    return
                boundary = self.headers["Content-Type"].split("boundary=")[1].encode()
                for chunk in body.split(b"--" + boundary)[1:-1]:
                    server.parts.append(chunk.split(b"\r\n\r\n", 1)[1][:-2])
                self.send_response(status)
                self.send_header("Content-Type", "application/dicom+json")
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/dicom-web"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop answering (once: a service already closed stays so)."""
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
            self.http = None


def test_predict_stores_its_objects_on_a_dicomweb_service(
    series, tmp_path, serve_stand_in, capsys, monkeypatch
):
    """`--send-to https://.../dicom-web`: one STOW-RS request to `/studies`, a multipart of the written files'
    bytes, with the bearer token from the environment; `msa-hf send` does the same for files again."""
    from msa_hf.cli import main
    from msa_hf.inference.dicomweb_store import TOKEN_VARIABLE

    service = DicomWebServer(token="s3cret")
    monkeypatch.setenv(TOKEN_VARIABLE, "s3cret")
    serve_stand_in(BoxFillSam(32))
    try:
        argv = _predict(series, tmp_path / "rs.dcm", "--dicom-output", "rtstruct", "--send-to", service.url)
        assert main(argv) == 0
        assert f"sent: 1 DICOM object to {service.url}" in capsys.readouterr().out
        assert service.parts == [(tmp_path / "rs.dcm").read_bytes()]
        (request,) = service.requests
        assert request["path"] == "/dicom-web/studies" and request["Authorization"] == "Bearer s3cret"
        assert 'type="application/dicom"' in request["Content-Type"]
        twice = [str(tmp_path / "rs.dcm")] * 2
        assert main(["send", *twice, "--to", service.url + "/studies"]) == 0
        assert service.parts[1:] == [(tmp_path / "rs.dcm").read_bytes()] * 2 and len(service.requests) == 2
        # a batch larger than one request's bytes goes in several requests, each file once
        monkeypatch.setattr("msa_hf.inference.dicomweb_store.REQUEST_BYTES", 1)
        assert main(["send", *twice, "--to", service.url]) == 0
        assert len(service.requests) == 4 and len(service.parts) == 5
    finally:
        service.close()


@pytest.mark.parametrize("problem", ["credentials", "refused", "nothing there"])
def test_a_dicomweb_service_that_does_not_store_them_is_named(
    tmp_path, series, serve_stand_in, capsys, problem
):
    """A wrong token (401), a service that stores nothing (409) or none at the URL: the error names the service
    and why (where to put the token), exit 2, the file kept."""
    import pydicom

    from msa_hf.cli import main

    service = DicomWebServer(status=409, token="right" if problem == "credentials" else None)
    url = service.url
    if problem == "nothing there":
        service.close()
    serve_stand_in(BoxFillSam(32))
    try:
        assert main(_predict(series, tmp_path / "out.dcm", "--send-to", url)) == 2
    finally:
        service.close()
    message = capsys.readouterr().err
    reason = {
        "credentials": "MSA_HF_DICOMWEB_TOKEN",
        "refused": "HTTP 409",
        "nothing there": "nothing answers",
    }
    assert f"DICOMweb service {url}" in message and reason[problem] in message and "kept" in message, message
    assert pydicom.dcmread(tmp_path / "out.dcm").Modality == "SEG"


def test_a_dicomweb_service_storing_some_of_them_says_how_many(tmp_path, series, serve_stand_in, capsys):
    """HTTP 202 with a Failed SOP Sequence of one: `send` of two files fails saying one of two was stored; 202
    without failures is a success."""
    import json

    from msa_hf.cli import main

    serve_stand_in(BoxFillSam(32))
    assert main(_predict(series, tmp_path / "out.dcm")) == 0
    failed = json.dumps({"00081198": {"vr": "SQ", "Value": [{"00081150": {"vr": "UI", "Value": ["1.2"]}}]}})
    partly, wholly = DicomWebServer(status=202, answer=failed.encode()), DicomWebServer(status=202)
    twice = [str(tmp_path / "out.dcm")] * 2
    capsys.readouterr()
    try:
        assert main(["send", *twice, "--to", partly.url]) == 2
        assert "it stored 1 of a request's 2 (HTTP 202, 1 refused)" in capsys.readouterr().err
        assert main(["send", *twice, "--to", wholly.url]) == 0
        assert f"sent: 2 DICOM objects to {wholly.url}" in capsys.readouterr().out
    finally:
        partly.close()
        wholly.close()
