"""A tiny stand-in for the Argo Server REST API that records every request (tests only).

    python tests/compile/argo_server_stub.py --port P --prefix /argo --record requests.jsonl [--token T]

Answers the calls `eurolora submit/schedule/status/logs` make, the way Argo Server does: create a workflow
(name from generateName), create a workflow template or a cron workflow (409 when it exists), get and
replace a cron workflow (409 unless the resourceVersion read is sent back), get a workflow (Running, then
Succeeded on the third poll), stream its logs as JSON lines; GET <prefix>/api/v1/version for health.
Anything outside the prefix is 404, so a client that drops the path prefix fails visibly.
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class State:
    def __init__(self, record: str, prefix: str, token: str | None) -> None:
        self.record, self.prefix, self.token = record, prefix.rstrip("/"), token
        self.lock = threading.Lock()
        self.workflows: dict[str, dict] = {}
        self.templates: dict[str, dict] = {}
        self.crons: dict[str, dict] = {}
        self.polls: dict[str, int] = {}
        self.counter = 0


def _nodes(name: str, done: bool) -> dict:
    steps = [("ingest", "Succeeded", "1200/1200"), ("finetune", "Succeeded" if done else "Running", "3/40"),
             ("judge", "Succeeded" if done else "Pending", "")]
    nodes = {}
    for i, (step, phase, progress) in enumerate(steps):
        nodes[f"{name}-{i}"] = {"id": f"{name}-{i}", "name": f"{name}.{step}", "displayName": step, "type": "Pod",
                                "phase": phase, "progress": progress, "startedAt": f"2026-11-01T02:0{i}:00Z"}
    nodes[f"{name}-9"] = {"id": f"{name}-9", "name": f"{name}.promote", "displayName": "promote",
                          "type": "Skipped", "phase": "Omitted"}
    return nodes


def make_handler(state: State) -> type:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _send(self, code: int, body: object, ndjson: bool = False) -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            with state.lock, open(state.record, "a") as log:
                log.write(json.dumps({"method": method, "path": parts.path, "query": parse_qs(parts.query),
                                      "authorization": self.headers.get("Authorization"),
                                      "content_type": self.headers.get("Content-Type"), "body": body}) + "\n")
            if not parts.path.startswith(state.prefix + "/api/v1/"):
                return self._send(404, {"code": 5, "message": f"no route {parts.path}"})
            if state.token and self.headers.get("Authorization") != f"Bearer {state.token}":
                return self._send(401, {"code": 16, "message": "token not valid"})
            path = parts.path[len(state.prefix):].strip("/").split("/")  # api v1 <kind> <ns> [name] [log]
            with state.lock:
                return self._route(method, path, body)

        def _route(self, method: str, path: list[str], body: dict | None) -> None:
            kind = path[2]
            if kind == "version":
                return self._send(200, {"version": "v4.1.2"})
            if method == "POST" and kind == "workflows" and len(path) == 4:
                wf = body["workflow"]
                state.counter += 1
                name = wf["metadata"].get("name") or f"{wf['metadata']['generateName']}x{state.counter:04d}"
                wf = {**wf, "metadata": {**wf["metadata"], "name": name}, "status": {"phase": "Pending"}}
                state.workflows[name] = wf
                return self._send(200, wf)
            if method == "POST" and kind == "workflow-templates" and len(path) == 4:
                name = body["template"]["metadata"]["name"]
                if name in state.templates:
                    return self._send(409, {"code": 6, "message": f'workflowtemplates.argoproj.io "{name}" '
                                                                  "already exists"})
                state.templates[name] = body["template"]
                return self._send(200, body["template"])
            if kind == "cron-workflows":
                return self._cron(method, path, body)
            if method == "GET" and kind == "workflows" and len(path) >= 5:
                name = path[4]
                if name not in state.workflows:
                    return self._send(404, {"code": 5, "message": f'workflows.argoproj.io "{name}" not found'})
                if len(path) == 6 and path[5] == "log":
                    lines = [{"result": {"podName": f"{name}-{step}-1", "content": f"{step} line {i}"}}
                             for step in ("ingest", "finetune") for i in range(2)]
                    return self._send(200, "\n".join(json.dumps(x) for x in lines) + "\n", ndjson=True)
                polls = state.polls[name] = state.polls.get(name, 0) + 1
                done = polls >= 3
                wf = dict(state.workflows[name])
                wf["status"] = {"phase": "Succeeded" if done else "Running", "progress": "3/3" if done else
                                f"{polls}/3", "startedAt": "2026-11-01T02:00:00Z",
                                "finishedAt": "2026-11-01T03:00:00Z" if done else None,
                                "nodes": _nodes(name, done)}
                return self._send(200, wf)
            return self._send(404, {"code": 5, "message": f"no route {method} {'/'.join(path)}"})

        def _cron(self, method: str, path: list[str], body: dict | None) -> None:
            if method == "POST" and len(path) == 4:
                name = body["cronWorkflow"]["metadata"]["name"]
                if name in state.crons:
                    return self._send(409, {"code": 6, "message": f'cronworkflows.argoproj.io "{name}" already exists'})
                state.crons[name] = {**body["cronWorkflow"], "metadata": {**body["cronWorkflow"]["metadata"],
                                                                          "resourceVersion": "1"}}
                return self._send(200, state.crons[name])
            name = path[4] if len(path) == 5 else ""
            if name not in state.crons:
                return self._send(404, {"code": 5, "message": f'cronworkflows.argoproj.io "{name}" not found'})
            if method == "GET":
                return self._send(200, state.crons[name])
            if method == "PUT":
                version = state.crons[name]["metadata"]["resourceVersion"]
                if body["cronWorkflow"]["metadata"].get("resourceVersion") != version:
                    return self._send(409, {"code": 10, "message": "the object has been modified"})
                state.crons[name] = {**body["cronWorkflow"], "metadata": {
                    **body["cronWorkflow"]["metadata"], "resourceVersion": str(int(version) + 1)}}
                return self._send(200, state.crons[name])
            return self._send(404, {"code": 5, "message": f"no route {method} {'/'.join(path)}"})

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--record", required=True)
    parser.add_argument("--token")
    args = parser.parse_args()
    state = State(args.record, args.prefix, args.token)
    ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state)).serve_forever()


if __name__ == "__main__":
    main()
