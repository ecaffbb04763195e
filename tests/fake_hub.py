"""A tiny in-memory Hugging Face Hub on 127.0.0.1 for tests (the real Hub is unreachable here).

It speaks just enough of the Hub's HTTP protocol for huggingface_hub's own client code: repo creation,
preupload (every file "regular", so content travels base64 inside the commit), NDJSON commits, repo info,
file trees, and `resolve` downloads with the headers the client checks (X-Repo-Commit, ETag,
Content-Length). Nothing is published anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


class FakeHub:
    """Repos as `{(type, repo_id): {"files": {path: bytes}, "sha": str, "private": bool, "sdk": str}}`, and a
    Space's "hardware" once requested."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], dict] = {}
        self.commits: list[dict] = []
        self.fail_commits_to: set[str] = set()  # repo ids whose commits fail with HTTP 500 (nothing applied)
        self.tokens: set[str] | None = None  # when set, requests must carry one of these bearer tokens
        self.refuse_hardware = (
            False  # a Space's hardware request refused (HTTP 402), as for an account without PRO
        )
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(
                self, status: int, body: bytes | dict | list = b"", headers: dict | None = None
            ) -> None:
                payload = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if isinstance(body, (dict, list)):
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def _authorised(self) -> bool:
                if hub.tokens is None:
                    return True
                token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                if token in hub.tokens:
                    return True
                self._send(401, {"error": "Invalid credentials in Authorization header"})
                return False

            def do_POST(self) -> None:
                path = urlparse(self.path).path
                body = self._body()
                if not self._authorised():
                    return None
                if path == "/api/repos/create":
                    data = json.loads(body)
                    repo_type = data.get("type", "model") or "model"
                    repo_id = (
                        f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                    )
                    key = (repo_type, repo_id)
                    if key in hub.repos:
                        return self._send(
                            409,
                            {"error": "You already created this repo", "url": f"{hub.endpoint}/{repo_id}"},
                        )
                    hub.repos[key] = {
                        "files": {},
                        "sha": "0" * 40,
                        "private": data.get("visibility", "private" if data.get("private") else "public")
                        != "public",
                        "sdk": data.get("sdk"),
                    }
                    return self._send(
                        200, {"url": f"{hub.endpoint}/{repo_id}", "name": repo_id, "id": repo_id}
                    )
                if path == "/api/validate-yaml":
                    return self._send(200, {})
                parts = path.split("/")  # /api/{type}s/{org}/{name}/{action}/{revision}
                if parts[1:3] == ["api", "spaces"] and parts[5:] == ["hardware"]:
                    repo = hub.repos.get(("space", f"{parts[3]}/{parts[4]}"))
                    if repo is None:
                        return self._send(
                            404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
                        )
                    flavor = json.loads(body)["flavor"]
                    if hub.refuse_hardware:
                        return self._send(402, {"error": f"Subscribe to PRO to use {flavor}"})
                    repo["hardware"] = flavor
                    return self._send(
                        200, {"stage": "BUILDING", "hardware": {"current": None, "requested": flavor}}
                    )
                if len(parts) >= 7 and parts[1] == "api" and parts[2] in REPO_TYPES:
                    repo = hub.repos.get((REPO_TYPES[parts[2]], f"{parts[3]}/{parts[4]}"))
                    if repo is None:
                        return self._send(
                            404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
                        )
                    if parts[5] == "branch":
                        repo.setdefault("branches", set()).add(unquote(parts[6]))
                        return self._send(200, {})
                    if parts[5] == "preupload":
                        files = json.loads(body)["files"]
                        return self._send(200, {"files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files
                        ]})  # fmt: skip
                    if parts[5] == "commit":
                        if f"{parts[3]}/{parts[4]}" in hub.fail_commits_to:
                            return self._send(
                                500, {"error": "Internal Error - We're working hard to fix this"}
                            )
                        summary = ""
                        for line in body.decode().splitlines():
                            entry = json.loads(line)
                            if entry["key"] == "header":
                                summary = entry["value"].get("summary", "")
                            elif entry["key"] == "file":
                                repo["files"][entry["value"]["path"]] = base64.b64decode(
                                    entry["value"]["content"]
                                )
                            elif entry["key"] == "deletedFile":
                                repo["files"].pop(entry["value"]["path"], None)
                            elif entry["key"] == "lfsFile":
                                return self._send(400, {"error": "the fake hub takes regular uploads only"})
                        digest = hashlib.sha1(
                            repr(
                                sorted((p, hashlib.sha1(c).hexdigest()) for p, c in repo["files"].items())
                            ).encode()
                        )
                        repo["sha"] = digest.hexdigest()
                        hub.commits.append(
                            {
                                "repo": f"{parts[3]}/{parts[4]}",
                                "summary": summary,
                                "revision": unquote(parts[6]),
                            }
                        )
                        url = f"{hub.endpoint}/{parts[3]}/{parts[4]}/commit/{repo['sha']}"
                        return self._send(
                            200, {"commitUrl": url, "commitOid": repo["sha"], "pullRequestUrl": None}
                        )
                return self._send(404, {"error": f"no route POST {path}"})

            def _file(self, repo_type: str, repo_id: str, filename: str) -> None:
                repo = hub.repos.get((repo_type, repo_id))
                if repo is None:
                    return self._send(
                        404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
                    )
                content = repo["files"].get(filename)
                if content is None:
                    return self._send(
                        404,
                        {"error": "Entry not found"},
                        {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo["sha"]},
                    )
                etag = '"' + hashlib.sha1(content).hexdigest() + '"'
                return self._send(
                    200,
                    content,
                    {"X-Repo-Commit": repo["sha"], "ETag": etag, "Content-Type": "application/octet-stream"},
                )

            def _route_get(self) -> None:
                path = unquote(urlparse(self.path).path)
                parts = path.split("/")
                if len(parts) >= 5 and parts[1] == "api" and parts[2] in REPO_TYPES:
                    repo_type, repo_id = REPO_TYPES[parts[2]], f"{parts[3]}/{parts[4]}"
                    repo = hub.repos.get((repo_type, repo_id))
                    if repo is None:
                        return self._send(
                            404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
                        )
                    if len(parts) >= 7 and parts[5] == "tree":
                        prefix = "/".join(parts[7:])
                        entries = [{"type": "file", "path": p, "size": len(c), "oid": hashlib.sha1(c).hexdigest()}
                                   for p, c in sorted(repo["files"].items()) if p.startswith(prefix)]  # fmt: skip
                        return self._send(200, entries)
                    info = {"id": repo_id, "sha": repo["sha"], "private": repo["private"],
                            "siblings": [{"rfilename": p} for p in sorted(repo["files"])]}  # fmt: skip
                    if repo_type == "space":
                        info["sdk"] = repo["sdk"]
                    return self._send(200, info)
                if "resolve" in parts:
                    at = parts.index("resolve")
                    prefix = parts[1:at]
                    repo_type = REPO_TYPES.get(prefix[0], "model") if len(prefix) == 3 else "model"
                    repo_id = "/".join(prefix[-2:])
                    return self._file(repo_type, repo_id, "/".join(parts[at + 2 :]))
                return self._send(404, {"error": f"no route GET {path}"})

            def do_GET(self) -> None:
                self._route_get()

            def do_HEAD(self) -> None:
                self._route_get()

        return Handler
