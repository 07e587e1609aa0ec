#!/usr/bin/env python3
"""A fake OpenAI-compatible streaming server for moeserve-bench's openai backends.

Serves GET /v1/models, POST /tokenize (one token per word) and streamed POST /v1/completions and
/v1/chat/completions as vLLM does: Server-Sent Events, a usage chunk when
stream_options.include_usage, `data: [DONE]`. The stream is made awkward on purpose: chunked
transfer encoding with events split across network writes, a `: keep-alive` comment, CRLF line
endings on every other event, a chat role chunk without content, and every third chunk carrying
two tokens (so chunks != tokens and only usage gives the right count).

A prompt containing one of these words changes the answer:
  refuse        HTTP 429 with OpenAI's error JSON
  stream-error  two tokens, then a `data: {"error": {...}}` event (code 500)
  garbage       one token, then an event that is not JSON
  no-usage      no usage chunk even when asked for
  slow          200 ms between tokens (for deadlines and cancellation)

GET /metrics is a Prometheus page with moeserve_generation_tokens_total (tokens streamed so far),
so the bench's --scrape-metrics can be checked against an HTTP backend.

Writes {"port": N} to --port-file once listening and one JSON line per request to --log.
"""
import argparse
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "fake-model"
TOKEN_DELAY_S = 0.01


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # As real servers: no Nagle delay on the small writes of a token stream.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):  # quiet
        pass

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        key = self.server.api_key
        if key and self.headers.get("Authorization") != "Bearer " + key:
            self.send_json(401, {"error": {"message": "bad api key", "type": "auth", "code": 401}})
            return False
        return True

    def do_GET(self):
        if self.path != "/metrics" and not self.authorized():  # metrics are open, as ours
            return
        if self.path == "/metrics":
            with self.server.log_lock:
                page = "moeserve_generation_tokens_total %d\n" % self.server.tokens_streamed
            data = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/v1/models":
            self.send_json(200, {"object": "list",
                                 "data": [{"id": MODEL, "object": "model", "max_model_len": 2048}]})
        else:
            self.send_json(404, {"error": {"message": "not found", "type": "NotFound", "code": 404}})

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.server.log_lock:
            with open(self.server.log_path, "a") as log:
                log.write(json.dumps({"path": self.path,
                                      "authorization": self.headers.get("Authorization"),
                                      "body": body}) + "\n")
        if not self.authorized():
            return
        if self.path == "/tokenize":
            self.send_json(200, {"tokens": list(range(len(body.get("prompt", "").split())))})
            return
        chat = self.path == "/v1/chat/completions"
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            self.send_json(404, {"error": {"message": "not found", "type": "NotFound", "code": 404}})
            return
        prompt = body["messages"][0]["content"] if chat else body["prompt"]
        prompt_tokens = len(prompt) if isinstance(prompt, list) else len(prompt.split())
        text = prompt if isinstance(prompt, str) else ""
        if "refuse" in text:
            self.send_json(429, {"error": {"message": "fake server is full",
                                           "type": "rate_limit_error", "code": 429}})
            return
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens", 16)) if chat \
            else body.get("max_tokens", 16)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self.stream(chat, text, prompt_tokens, max_tokens,
                        body.get("stream_options", {}).get("include_usage", False))
            self.write_chunk(b"")  # the final, empty chunk
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (an error event, a cancel)

    def event(self, payload, index):
        line_end = b"\r\n" if index % 2 else b"\n"
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        raw = b"data: " + data + line_end + line_end
        # Split inside the event, so the client sees half an event in one read.
        half = len(raw) // 2
        self.write_chunk(raw[:half])
        time.sleep(0.001)
        self.write_chunk(raw[half:])

    def stream(self, chat, text, prompt_tokens, max_tokens, include_usage):
        def chunk(piece, finish=None):
            if chat:
                choice = {"index": 0, "delta": {"content": piece} if piece is not None else {},
                          "finish_reason": finish}
            else:
                choice = {"index": 0, "text": piece or "", "finish_reason": finish}
            return {"id": "cmpl-1", "object": "chat.completion.chunk" if chat else
                    "text_completion", "model": MODEL, "choices": [choice]}

        index = 0
        if chat:  # vLLM's first chat chunk: the role, no content
            self.event({"id": "cmpl-1", "object": "chat.completion.chunk", "model": MODEL,
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                     "finish_reason": None}]}, index)
            index += 1
        sent = 0
        message = 0
        while sent < max_tokens:
            time.sleep(0.2 if "slow" in text else TOKEN_DELAY_S)
            n = min(2 if message % 3 == 2 else 1, max_tokens - sent)
            self.event(chunk("tok " * n), index)
            index += 1
            sent += n
            message += 1
            with self.server.log_lock:
                self.server.tokens_streamed += n
            if message == 1:
                self.write_chunk(b": keep-alive\n\n")
            if "stream-error" in text and sent >= 2:
                self.event({"error": {"message": "fake engine failure",
                                      "type": "InternalServerError", "code": 500}}, index)
                self.event(b"[DONE]", index + 1)
                return
            if "garbage" in text:
                self.event(b"{this is not json", index)
                return
        self.event(chunk(None if chat else "", finish="length"), index)
        index += 1
        if include_usage and "no-usage" not in text:
            self.event({"id": "cmpl-1", "model": MODEL, "choices": [],
                        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": sent,
                                  "total_tokens": prompt_tokens + sent}}, index)
            index += 1
        self.event(b"[DONE]", index)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--api-key", default="")
    args = parser.parse_args()
    ThreadingHTTPServer.request_queue_size = 1024  # listen backlog (socketserver's default: 5)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.api_key = args.api_key
    server.log_path = args.log
    server.log_lock = threading.Lock()
    server.tokens_streamed = 0
    with open(args.port_file + ".tmp", "w") as f:
        json.dump({"port": server.server_address[1]}, f)
    os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
