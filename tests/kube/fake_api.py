"""An in-process fake of the Kubernetes API for namespaced custom resources (no cluster can run here).

It answers what the `kubernetes` client's CustomObjectsApi sends: POST to the collection, GET / PATCH (JSON
merge patch) / PUT / DELETE of one object, under `/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]`,
with Kubernetes `Status` bodies for errors (401 without the bearer token, 404, 409 AlreadyExists, 415 for a
patch type it does not speak). Only the plurals in `served` exist; anything else is a 404 as on a cluster
without that CRD. Every request is recorded.

    with FakeKubeApi(served={("serving.kserve.io", "v1beta1", "inferenceservices")}) as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", namespace="models")
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

TOKEN = "fake-token"
_PATH = re.compile(r"/apis/([^/]+)/([^/]+)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?")


@dataclass
class Request:
    method: str
    path: str
    content_type: str | None
    body: Any


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class FakeKubeApi:
    def __init__(self, served: set[tuple[str, str, str]]) -> None:
        self.served = served
        self.objects: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
        self.requests: list[Request] = []
        self.versions = itertools.count(1)
        self.lock = threading.Lock()
        self.reject: tuple[int, str, str] | None = None  # the next write answers this (code, reason, message)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKubeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def write_kubeconfig(self, path: Path, namespace: str | None = None, token: str = TOKEN) -> Path:
        context: dict[str, Any] = {"cluster": "fake", "user": "tester"}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": token}}],
            "contexts": [
                {"name": "fake", "context": context},
                {"name": "other", "context": {"cluster": "fake", "user": "tester", "namespace": "other"}},
            ],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    def get(self, group: str, version: str, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((group, version, namespace, plural, name))

    # -- the HTTP side -------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                content_type = self.headers.get("Content-Type")
                path = self.path.split("?", 1)[0]
                with api.lock:
                    api.requests.append(Request(self.command, path, content_type, body))
                    code, answer = api._answer(self.command, path, content_type, body, self.headers)
                self._send(code, answer)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        return Handler

    def _answer(
        self, method: str, path: str, content_type: str | None, body: Any, headers: Any
    ) -> tuple[int, dict[str, Any]]:
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, status(401, "Unauthorized", "Unauthorized")
        match = _PATH.fullmatch(path)
        if not match or (match[1], match[2], match[4]) not in self.served:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        group, version, namespace, plural, name = match.groups()
        if method != "GET" and self.reject is not None:
            code, reason, message = self.reject
            self.reject = None
            return code, status(code, reason, message)
        if name is None:
            if method != "POST":
                return 405, status(405, "MethodNotAllowed", f"{method} on a collection is not served here")
            name = body["metadata"]["name"]
            key = (group, version, namespace, plural, name)
            if key in self.objects:
                return 409, status(409, "AlreadyExists", f'{plural}.{group} "{name}" already exists')
            if body["metadata"].get("namespace", namespace) != namespace:
                return 400, status(400, "BadRequest", "the namespace of the object does not match the URL")
            obj = copy.deepcopy(body)
            obj["metadata"].update(
                namespace=namespace, resourceVersion=str(next(self.versions)), generation=1
            )
            obj["metadata"]["uid"] = f"uid-{name}"
            obj["metadata"]["finalizers"] = ["controller.example/cleanup"]  # what an operator adds
            obj["status"] = {"observedGeneration": 0}
            self.objects[key] = obj
            return 201, obj
        key = (group, version, namespace, plural, name)
        current = self.objects.get(key)
        if current is None:
            return 404, status(404, "NotFound", f'{plural}.{group} "{name}" not found')
        if method == "GET":
            return 200, current
        if method == "DELETE":
            del self.objects[key]
            return 200, status(200, "", "deleted") | {"status": "Success"}
        if method == "PATCH":
            if content_type != "application/merge-patch+json":
                return 415, status(
                    415, "UnsupportedMediaType", f"the patch type {content_type!r} is not served here"
                )
            updated = merge_patch(current, body)
        elif method == "PUT":
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return 409, status(409, "Conflict", "the object has been modified; please apply your changes")
            updated = copy.deepcopy(body) | {"status": current.get("status")}
        else:
            return 405, status(405, "MethodNotAllowed", f"{method} is not served here")
        updated["metadata"]["resourceVersion"] = str(next(self.versions))
        if updated.get("spec") != current.get("spec"):
            updated["metadata"]["generation"] = current["metadata"]["generation"] + 1
        self.objects[key] = updated
        return 200, updated
