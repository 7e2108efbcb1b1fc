"""A misbehaving OpenAI-compatible server for tests, run as a real process on 127.0.0.1 (stdlib only).

    python tests/support/openai_misbehaving_server.py --port N [--prefix /prefix/v1] [--hang-s 5]

Serves `POST {prefix}/chat/completions` and `GET {prefix}/models`. The behaviour of each request is
chosen by its model name, `<mode>` or `<mode>:<tag>`; a distinct tag per request keeps the per-model
attempt counters of stateful modes apart. Modes:

    ok            200, content "echo:<last message content>", finish_reason "stop"
    length        200, finish_reason "length"
    gather<N>     holds the request until N gather requests are in flight at once (at most 10 s), then ok:
                  measures a client's concurrency without depending on how fast this machine is
    json          200, content '{"answer": "yes", "score": 3}' (the request body is recorded)
    500           500 always (vLLM-style error body)
    fail500x<N>   500 for the first N attempts, then ok
    429           429 always, Retry-After: 0
    429x<N>       429 (Retry-After: 0) for the first N attempts, then ok
    429ra1        429 with Retry-After: 1 once, then ok
    400           400 always, with an error message that echoes the prompt
    hang          sleeps --hang-s seconds before answering ok
    trickle       200 headers, then the body one byte every 0.1 s
    dropped       200 with a Content-Length, then the connection closes mid-body
    truncated     200, a complete HTTP body holding half of a JSON document
    nonjson       200, an HTML page
    wrongshape    200, valid JSON without choices
    nullcontent   200, choices[0].message.content is null
    filtered      200, finish_reason "content_filter"
    redirect      307 to https://api.openai.com/v1/chat/completions (must not be followed)

Test helpers: `GET /_stats` (max in-flight, attempts, Authorization header and last body per model),
`POST /_reset`.
"""

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE_LOCK = threading.Condition()
STATE: dict = {}


def reset() -> None:
    with STATE_LOCK:
        STATE.clear()
        # `gathered` counts only gather-mode requests: a reset cannot zero `inflight` while an earlier test's
        # hanging request is still being served (its late decrement would undercount the next test).
        STATE.update(inflight=0, max_inflight=0, gathered=0, max_gathered=0, attempts={}, auth={}, bodies={},
                     total=0)


def completion(model: str, content: str | None, finish: str = "stop") -> dict:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 5, "completion_tokens": len((content or "").split()), "total_tokens": 9},
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    server_version = "misbehaving-openai/1"
    prefix = "/v1"
    hang_s = 5.0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers=headers)

    def do_GET(self) -> None:
        if self.path == "/_stats":
            with STATE_LOCK:
                return self._json(200, STATE)
        if self.path == f"{self.prefix}/models":
            return self._json(200, {"object": "list", "data": [{"id": "base", "object": "model"}]})
        self._json(404, {"error": {"message": "not found", "type": "NotFoundError"}})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_reset":
            reset()
            return self._json(200, {})
        if self.path != f"{self.prefix}/chat/completions":
            return self._json(404, {"error": {"message": f"no route {self.path}", "type": "NotFoundError"}})
        body = json.loads(raw)
        model = str(body.get("model", ""))
        with STATE_LOCK:
            STATE["inflight"] += 1
            STATE["total"] += 1
            STATE["max_inflight"] = max(STATE["max_inflight"], STATE["inflight"])
            attempt = STATE["attempts"][model] = STATE["attempts"].get(model, 0) + 1
            STATE["auth"][model] = self.headers.get("Authorization")
            STATE["bodies"][model] = body
        try:
            self._answer(model.split(":", 1)[0], model, attempt, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout): nothing to answer
        finally:
            with STATE_LOCK:
                STATE["inflight"] -= 1

    def _answer(self, mode: str, model: str, attempt: int, body: dict) -> None:
        messages = body.get("messages") or [{"content": ""}]
        ok = completion(model, "echo:" + str(messages[-1].get("content", "")))
        server_error = {"object": "error", "message": "boom", "type": "InternalServerError", "code": 500}
        if mode == "ok":
            return self._json(200, ok)
        if mode == "length":
            return self._json(200, completion(model, "cut sh", "length"))
        if m := re.fullmatch(r"gather(\d+)", mode):
            with STATE_LOCK:
                STATE["gathered"] += 1
                STATE["max_gathered"] = max(STATE["max_gathered"], STATE["gathered"])
                STATE_LOCK.notify_all()
                STATE_LOCK.wait_for(lambda: STATE["gathered"] >= int(m[1]), timeout=10)
            try:
                return self._json(200, ok)
            finally:
                with STATE_LOCK:
                    STATE["gathered"] -= 1
        if mode == "json":
            return self._json(200, completion(model, '{"answer": "yes", "score": 3}'))
        if mode == "500":
            return self._json(500, server_error)
        if m := re.fullmatch(r"fail500x(\d+)", mode):
            return self._json(500, server_error) if attempt <= int(m[1]) else self._json(200, ok)
        if mode == "429":
            return self._json(429, {"error": {"message": "slow down", "type": "RateLimitError"}}, {"Retry-After": "0"})
        if m := re.fullmatch(r"429x(\d+)", mode):
            if attempt <= int(m[1]):
                return self._json(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
            return self._json(200, ok)
        if mode == "429ra1":
            if attempt == 1:
                return self._json(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
            return self._json(200, ok)
        if mode == "400":
            echoed = f"bad request for prompt {messages[-1].get('content')!r}"
            return self._json(400, {"error": {"message": echoed, "type": "BadRequestError", "code": 400}})
        if mode == "hang":
            time.sleep(self.hang_s)
            return self._json(200, ok)
        if mode == "trickle":
            data = json.dumps(ok).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(len(data)):
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(0.1)
            return None
        if mode == "dropped":
            data = json.dumps(ok).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:20])
            self.wfile.flush()
            self.close_connection = True
            return None
        if mode == "truncated":
            data = json.dumps(ok).encode()
            return self._send(200, data[: len(data) // 2])
        if mode == "nonjson":
            return self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        if mode == "wrongshape":
            return self._json(200, {"result": "ok", "text": "hello"})
        if mode == "nullcontent":
            return self._json(200, completion(model, None))
        if mode == "redirect":
            location = "https://api.openai.com/v1/chat/completions"
            return self._json(307, {"error": {"message": "moved"}}, {"Location": location})
        if mode == "filtered":
            return self._json(200, completion(model, "", "content_filter"))
        return self._json(404, {"error": {"message": f"unknown model {model}", "type": "NotFoundError"}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="/v1")
    parser.add_argument("--hang-s", type=float, default=5.0)
    args = parser.parse_args()
    Handler.prefix = "/" + args.prefix.strip("/")
    Handler.hang_s = args.hang_s
    reset()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
