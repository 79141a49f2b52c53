"""A local stand-in for the Hugging Face Hub's HTTP API, for tests only.

THIS IS A TEST DOUBLE, not a Hub implementation: it keeps model repos in memory and speaks just the routes that
``huggingface_hub`` (and through it timm and transformers) use to create a repo, upload files in a commit and
download them again — ``/api/repos/create``, ``/api/whoami-v2``, ``/api/validate-yaml``,
``/api/models/{id}/preupload/{rev}``, ``/api/models/{id}/commit/{rev}``, ``/api/models/{id}/branch/{rev}``,
``/api/models/{id}[/revision/{rev}]``, ``/api/models/{id}/tree/{rev}`` and ``/{id}/resolve/{rev}/{path}``. Every
file is stored as a regular git blob (no LFS or Xet). It rejects what the Hub rejects where it matters here: unknown
repo, revision or file → 404 with the Hub's ``X-Error-Code``, a duplicate create → 409, a write without a token →
401. ``fail_commits`` makes the next commits answer 500, and ``reset_requests[action]`` makes the next requests of
an action (``preupload``, ``commit``) end in a TCP reset without an answer, to test interrupted pushes. It runs on
127.0.0.1 only.
"""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    private: bool = False
    branches: dict[str, list[tuple[str, dict[str, bytes]]]] = field(default_factory=dict)  # branch → commits

    def head(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        if revision in self.branches:
            return self.branches[revision][-1]
        for commits in self.branches.values():  # a commit sha
            for oid, files in commits:
                if oid == revision:
                    return oid, files
        return None


class HubState:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.fail_commits = 0  # answer 500 to this many commit requests
        self.reset_requests: dict[str, int] = {}  # action → reset the connection of this many requests
        self.commit_count = 0
        self.tokens_seen: set[str] = set()
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server_version = "dive-hf-test-hub/1"
    protocol_version = "HTTP/1.1"

    @property
    def state(self) -> HubState:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, *args):  # keep test output clean
        pass

    # ---- helpers ----------------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reset(self):
        """Drop the connection with a TCP RST and no answer (a connection reset by the peer)."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _json(self, status: int, obj, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None):
        self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message} if code else
                   {"X-Error-Message": message})

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        if token:
            self.state.tokens_seen.add(token)
        return token

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    # ---- routing ----------------------------------------------------------------------------------------------
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = unquote(urlparse(self.path).path)
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "whoami-v2"]:
            if not self._token():
                return self._error(401, "Invalid credentials in Authorization header")
            return self._json(200, {"type": "user", "name": "tester", "orgs": [],
                                    "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id, rest = "/".join(parts[2:4]), parts[4:]
            repo = self._repo(repo_id)
            if repo is None:
                return None
            revision = "main"
            if rest[:1] in (["revision"], ["tree"]) and len(rest) >= 2:
                revision = rest[1]
            head = repo.head(revision)
            if head is None:
                return self._error(404, f"Revision {revision} not found", "RevisionNotFound")
            oid, files = head
            if rest[:1] == ["tree"]:
                prefix = "/".join(rest[2:])
                entries = [{"type": "file", "path": p, "size": len(d), "oid": git_blob_sha1(d)}
                           for p, d in sorted(files.items()) if p.startswith(prefix)]
                return self._json(200, entries)
            return self._json(200, {"id": repo_id, "modelId": repo_id, "sha": oid, "private": repo.private,
                                    "siblings": [{"rfilename": p} for p in sorted(files)], "tags": [],
                                    "lastModified": "2026-11-26T00:00:00.000Z"})
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            repo = self._repo(repo_id)
            if repo is None:
                return None
            head = repo.head(revision)
            if head is None:
                return self._error(404, f"Revision {revision} not found", "RevisionNotFound")
            oid, files = head
            if filename not in files:
                return self._error(404, f"Entry {filename} not found", "EntryNotFound")
            data = files[filename]
            return self._send(200, data, {"X-Repo-Commit": oid, "ETag": f'"{git_blob_sha1(data)}"'},
                              content_type="application/octet-stream")
        return self._error(404, f"no route for GET {path}")

    def do_POST(self):
        path = unquote(urlparse(self.path).path)
        parts = [p for p in path.split("/") if p]
        body = self._body()
        if not self._token():
            return self._error(401, "Invalid credentials in Authorization header")
        if parts == ["api", "repos", "create"]:
            payload = json.loads(body or b"{}")
            name = payload["name"]
            repo_id = name if "/" in name else f"{payload.get('organization') or 'tester'}/{name}"
            with self.state.lock:
                if repo_id in self.state.repos:
                    return self._json(409, {"error": "You already created this model repo",
                                            "url": f"http://{self.headers['Host']}/{repo_id}"})
                self.state.repos[repo_id] = Repo(private=bool(payload.get("private")),
                                                 branches={"main": [(hashlib.sha1(repo_id.encode()).hexdigest(), {})]})
            return self._json(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})
        if parts == ["api", "validate-yaml"]:
            return self._json(200, {"errors": [], "warnings": []})
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            repo_id, action, revision = "/".join(parts[2:4]), parts[4], "/".join(parts[5:])
            with self.state.lock:
                reset = self.state.reset_requests.get(action, 0) > 0
                if reset:
                    self.state.reset_requests[action] -= 1
            if reset:
                return self._reset()
            repo = self._repo(repo_id)
            if repo is None:
                return None
            if action == "branch":
                with self.state.lock:
                    if revision not in repo.branches:
                        repo.branches[revision] = [repo.branches["main"][-1]]
                return self._json(200, {})
            head = repo.head(revision)
            if head is None:
                return self._error(404, f"Revision {revision} not found", "RevisionNotFound")
            if action == "preupload":
                files = head[1]
                answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                           "oid": git_blob_sha1(files[f["path"]]) if f["path"] in files else None}
                          for f in json.loads(body)["files"]]
                return self._json(200, {"files": answer, "commitOid": head[0]})
            if action == "commit":
                return self._commit(repo, repo_id, revision, body)
        return self._error(404, f"no route for POST {path}")

    def _commit(self, repo: Repo, repo_id: str, revision: str, body: bytes):
        with self.state.lock:
            self.state.commit_count += 1
            if self.state.fail_commits > 0:
                self.state.fail_commits -= 1
                return self._error(500, "Internal Error - We're working hard to fix this as soon as possible!")
            files = dict(repo.branches[revision][-1][1])
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    value = item["value"]
                    files[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "deletedFile":
                    files.pop(item["value"]["path"], None)
                elif item["key"] == "lfsFile":
                    return self._error(400, "this test server stores regular files only")
            oid = hashlib.sha1(f"{repo_id}{time.time_ns()}{len(files)}".encode()).hexdigest()
            repo.branches[revision].append((oid, files))
        return self._json(200, {"commitUrl": f"http://{self.headers['Host']}/{repo_id}/commit/{oid}",
                                "commitOid": oid, "pullRequestUrl": None})


class LocalHub:
    """Start/stop the test server on a free port of 127.0.0.1; ``endpoint`` is its base URL."""

    def __init__(self):
        self.state = HubState()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.state = self.state  # type: ignore[attr-defined]
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalHub":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.state.repos[repo_id].head(revision)[1])
