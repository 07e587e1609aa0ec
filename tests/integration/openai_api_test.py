#!/usr/bin/env python3
"""moeserve's OpenAI-compatible HTTP API through the official `openai` Python client and curl.

Starts the real `moeserve` binary (--http-port -1: ephemeral, --port-file) on the tiny random
DeepSeek-V3 test model (its tokenizer_config.json carries DeepSeek-V3's chat template) with an
API key, and checks over the wire: /v1/models, completions and chat, streaming and not (the
streamed text equals the whole one), n choices, seeds, stop strings, logprobs, usage, errors
(status, OpenAI's error body, the field named) and auth, raw SSE framing with curl, /tokenize
and /detokenize, /health, /version and /metrics, gRPC chat input through `moeserve-cli chat`
(the same replies as /v1/chat/completions, turn after turn), a client that leaves mid-stream (its KV blocks
are freed), the deepseek_r1 reasoning parser, and a SIGTERM drain with a stream in flight.

The client is the PyPI package, pinned below, installed into a venv the test makes (kept in the
build tree between runs). CTest runs:
  openai_api_test.py --server BIN --make-model BIN --cli BIN --checkpoints DIR --workdir DIR
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from test_support import ensure_checkpoint, metric_value

# Pinned: the client whose behaviour the tests assert (httpx pinned with it: 0.28 changed an
# argument openai 1.55 passes).
PINNED = ["openai==1.55.3", "httpx==0.27.2"]
SERVED_MODEL_NAME = "openai-test-model"
API_KEY = "test-key-0123456789"
ARGS = None
openai = None  # imported inside the venv


def ensure_venv(workdir):
    """Re-executes this script under a venv that has the pinned client."""
    venv = os.path.join(workdir, "venv-" + "-".join(p.replace("==", "") for p in PINNED))
    python = os.path.join(venv, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(venv):
        return
    if not os.path.exists(os.path.join(venv, ".complete")):
        subprocess.run(["rm", "-rf", venv], check=True)
        for base in ("python3", "/usr/bin/python3"):
            if subprocess.run([base, "-m", "venv", venv], capture_output=True).returncode == 0:
                break
        else:
            sys.exit("cannot create a venv (python3 -m venv) for the openai client")
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
                       + PINNED, check=True)
        open(os.path.join(venv, ".complete"), "w").close()
    os.execv(python, [python] + sys.argv)




class Server:
    def __init__(self, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="moeserve_openai_", dir=ARGS.workdir)
        self.port_file = os.path.join(self.dir, "ports.json")
        self.log_path = os.path.join(self.dir, "server.log")
        self.command = [ARGS.server, "--model", ARGS.model, "--served-model-name",
                        SERVED_MODEL_NAME, "--host", "127.0.0.1", "--port", "0",
                        "--metrics-port", "0", "--http-port", "-1", "--port-file",
                        self.port_file, "--api-key", API_KEY] + list(extra_args)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moeserve exited {self.process.returncode}:\n{self.log()}")
            try:
                with open(self.port_file) as f:
                    ports = json.load(f)
                self.http_port, self.metrics_port = ports["http_port"], ports["metrics_port"]
                self.grpc_port = ports["grpc_port"]
                self.base = f"http://127.0.0.1:{self.http_port}"
                return
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        raise RuntimeError("moeserve did not become ready:\n" + self.log())

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            return self.process.wait(timeout=60)
        return self.process.returncode

    def client(self, api_key=API_KEY):
        return openai.OpenAI(base_url=self.base + "/v1", api_key=api_key, max_retries=0,
                             timeout=120)

    def http(self, method, path, body=None, key=API_KEY):
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", "Bearer " + key)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


class OpenAiApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.client = cls.server.client()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def greedy(self, prompt="In the beginning God created", **kw):
        kw.setdefault("max_tokens", 12)
        return self.client.completions.create(model=SERVED_MODEL_NAME, prompt=prompt,
                                              temperature=0, extra_body={"ignore_eos": True},
                                              **kw)

    def test_models_lists_the_served_model(self):
        models = self.client.models.list()
        self.assertEqual([m.id for m in models.data], [SERVED_MODEL_NAME])
        raw = json.loads(self.server.http("GET", "/v1/models")[1])
        self.assertGreater(raw["data"][0]["max_model_len"], 0)
        self.assertIn("generation_defaults", raw["data"][0])

    def test_completion_shape_usage_and_logprobs(self):
        r = self.greedy(max_tokens=10, logprobs=2)
        self.assertTrue(r.id.startswith("cmpl-"))
        self.assertEqual(r.object, "text_completion")
        self.assertEqual(r.model, SERVED_MODEL_NAME)
        self.assertGreater(r.created, 1.7e9)
        choice = r.choices[0]
        self.assertEqual(choice.finish_reason, "length")
        self.assertEqual(r.usage.completion_tokens, 10)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + 10)
        tokenized = json.loads(self.server.http(
            "POST", "/tokenize", {"prompt": "In the beginning God created"})[1])
        self.assertEqual(r.usage.prompt_tokens, tokenized["count"])
        lp = choice.logprobs
        self.assertEqual(len(lp.tokens), 10)
        self.assertEqual(len(lp.token_logprobs), 10)
        self.assertEqual(len(lp.top_logprobs), 10)
        for logprob, top in zip(lp.token_logprobs, lp.top_logprobs):
            self.assertLessEqual(logprob, 0.0)
            self.assertLessEqual(len(top), 2)
            # Greedy: the chosen token is the most likely one.
            self.assertAlmostEqual(logprob, max(top.values()), places=4)
        self.assertEqual(lp.text_offset[0], 0)

    def test_streaming_equals_whole_response(self):
        whole = self.greedy(max_tokens=16).choices[0].text
        chunks = list(self.client.completions.create(
            model=SERVED_MODEL_NAME, prompt="In the beginning God created", temperature=0,
            max_tokens=16, stream=True, stream_options={"include_usage": True},
            extra_body={"ignore_eos": True}))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        self.assertEqual(text, whole)
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens, 16)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        self.assertEqual(finishes[-1], "length")
        self.assertTrue(all(f is None for f in finishes[:-1]))

    def test_n_choices_and_seed_reproducibility(self):
        def run():
            return self.client.completions.create(
                model=SERVED_MODEL_NAME, prompt="And God said", n=3, temperature=1.0,
                max_tokens=12, seed=1234, extra_body={"ignore_eos": True})
        first, second = run(), run()
        self.assertEqual(sorted(c.index for c in first.choices), [0, 1, 2])
        self.assertEqual([c.text for c in first.choices], [c.text for c in second.choices])
        self.assertEqual(first.usage.completion_tokens, 36)
        self.assertGreater(len({c.text for c in first.choices}), 1)
        # Several prompts × n: indexes are prompt-major.
        many = self.client.completions.create(model=SERVED_MODEL_NAME, prompt=["a", "b"], n=2,
                                              temperature=0, max_tokens=4,
                                              extra_body={"ignore_eos": True})
        self.assertEqual(sorted(c.index for c in many.choices), [0, 1, 2, 3])

    def test_stop_string_truncates(self):
        full = self.greedy(max_tokens=24).choices[0].text
        self.assertGreater(len(full), 8)
        stop = full[len(full) // 2:len(full) // 2 + 3]
        r = self.greedy(max_tokens=24, stop=[stop])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertEqual(r.choices[0].text, full[:full.index(stop)])

    def test_chat_whole_and_streamed(self):
        messages = [{"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Who created the heaven?"}]
        whole = self.client.chat.completions.create(
            model=SERVED_MODEL_NAME, messages=messages, temperature=0, max_tokens=12)
        self.assertTrue(whole.id.startswith("chatcmpl-"))
        self.assertEqual(whole.object, "chat.completion")
        message = whole.choices[0].message
        self.assertEqual(message.role, "assistant")
        self.assertIn(whole.choices[0].finish_reason, ("stop", "length"))
        rendered = json.loads(self.server.http("POST", "/tokenize", {"messages": messages})[1])
        self.assertEqual(whole.usage.prompt_tokens, rendered["count"])
        stream = list(self.client.chat.completions.create(
            model=SERVED_MODEL_NAME, messages=messages, temperature=0, max_tokens=12,
            stream=True))
        self.assertEqual(stream[0].choices[0].delta.role, "assistant")
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in stream),
                         message.content)
        self.assertEqual(stream[-1].choices[0].finish_reason, whole.choices[0].finish_reason)

    def test_grpc_chat_through_the_cli_equals_http_chat(self):
        # Two front ends, one template and one engine: moeserve-cli chat (gRPC chat input) and
        # /v1/chat/completions give the same greedy reply, turn after turn.
        def http_reply(messages):
            return self.client.chat.completions.create(
                model=SERVED_MODEL_NAME, messages=messages, temperature=0, max_tokens=10,
                extra_body={"ignore_eos": True}).choices[0].message.content
        cli = [ARGS.cli, "--target", f"127.0.0.1:{self.server.grpc_port}", "--api-key", API_KEY,
               "chat", "--system", "You are terse.", "--temperature", "0", "--max-tokens", "10",
               "--ignore-eos"]
        one = subprocess.run(cli + ["Who divided the waters?"], capture_output=True, text=True,
                             timeout=120)
        self.assertEqual(one.returncode, 0, one.stderr)
        messages = [{"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Who divided the waters?"}]
        first = http_reply(messages)
        self.assertEqual(one.stdout, first + "\n")
        # A conversation on stdin: the second turn sees the first reply.
        two = subprocess.run(cli, input="Who divided the waters?\nAnd then?\n",
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(two.returncode, 0, two.stderr)
        second = http_reply(messages + [{"role": "assistant", "content": first},
                                        {"role": "user", "content": "And then?"}])
        self.assertEqual(two.stdout, first + "\n" + second + "\n")

    def test_chat_logprobs(self):
        r = self.client.chat.completions.create(
            model=SERVED_MODEL_NAME, messages=[{"role": "user", "content": "Hi"}],
            temperature=0, max_completion_tokens=5, logprobs=True, top_logprobs=3,
            extra_body={"ignore_eos": True})
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), 5)
        for entry in content:
            self.assertEqual(len(entry.top_logprobs), 3)
            self.assertAlmostEqual(entry.logprob, entry.top_logprobs[0].logprob, places=4)
            self.assertIsInstance(entry.bytes, list)

    def test_errors_are_openai_shaped_and_name_the_field(self):
        cases = [
            ({"temperature": -1}, "temperature"),
            ({"top_p": 1.5}, "top_p"),
            ({"max_tokens": 10 ** 7}, "max_tokens"),
            ({"n": 0}, "n"),
            ({"logit_bias": {"999999999": 1}}, "logit_bias"),
            ({"stop": 3}, "stop"),
        ]
        for extra, field in cases:
            with self.subTest(field=field):
                with self.assertRaises(openai.BadRequestError) as caught:
                    self.client.completions.create(model=SERVED_MODEL_NAME, prompt="x",
                                                   extra_body=extra)
                self.assertEqual(caught.exception.status_code, 400)
                error = caught.exception.body
                self.assertIn(field, error["message"])
                self.assertEqual(error["type"], "invalid_request_error")
        with self.assertRaises(openai.NotFoundError):
            self.client.completions.create(model="gpt-4", prompt="x")
        with self.assertRaises(openai.AuthenticationError):
            self.server.client(api_key="wrong").completions.create(model=SERVED_MODEL_NAME,
                                                                   prompt="x")
        status, body = self.server.http("POST", "/v1/completions", {"prompt": "x"}, key=None)
        self.assertEqual(status, 401)
        self.assertIn("error", json.loads(body))
        status, body = self.server.http("POST", "/v1/completions", None)
        self.assertEqual(status, 400)
        status, _ = self.server.http("GET", "/v1/completions")
        self.assertEqual(status, 405)
        status, _ = self.server.http("GET", "/v2/nothing")
        self.assertEqual(status, 404)
        # Still serving.
        self.assertEqual(self.greedy(max_tokens=2).usage.completion_tokens, 2)

    def test_raw_sse_framing_with_curl(self):
        body = json.dumps({"model": SERVED_MODEL_NAME, "prompt": "Let there be", "max_tokens": 6,
                           "temperature": 0, "stream": True, "ignore_eos": True})
        out = subprocess.run(
            ["curl", "-sS", "-N", "--max-time", "60", "-H", "Content-Type: application/json",
             "-H", "Authorization: Bearer " + API_KEY, "-d", body, "-D", "-",
             self.server.base + "/v1/completions"], capture_output=True, check=True)
        head, _, events = out.stdout.decode().partition("\r\n\r\n")
        self.assertIn("HTTP/1.1 200", head)
        self.assertRegex(head.lower(), r"content-type: text/event-stream")
        self.assertTrue(events.endswith("data: [DONE]\n\n"), events[-80:])
        frames = [f for f in events.split("\n\n") if f]
        for frame in frames:
            self.assertTrue(frame.startswith("data: "), frame)
        payloads = [json.loads(f[6:]) for f in frames[:-1]]
        self.assertEqual(payloads[-1]["choices"][0]["finish_reason"], "length")

    def test_tokenize_detokenize_round_trip(self):
        text = "And the evening and the morning were the first day."
        status, body = self.server.http("POST", "/tokenize",
                                        {"prompt": text, "add_special_tokens": False})
        self.assertEqual(status, 200)
        tokens = json.loads(body)["tokens"]
        status, body = self.server.http("POST", "/detokenize", {"tokens": tokens})
        self.assertEqual(json.loads(body)["prompt"], text)
        status, body = self.server.http("POST", "/detokenize", {"tokens": [10 ** 9]})
        self.assertEqual(status, 400)

    def test_health_version_and_metrics(self):
        self.assertEqual(self.server.http("GET", "/health", key=None)[0], 200)
        status, body = self.server.http("GET", "/version", key=None)
        self.assertEqual(status, 200)
        self.assertRegex(json.loads(body)["version"], r"^\d+\.\d+\.\d+")
        self.greedy(max_tokens=2)
        status, text = self.server.http("GET", "/metrics", key=None)
        self.assertEqual(status, 200)
        self.assertGreaterEqual(metric_value(
            text, "moeserve_http_requests_total", 'code="200",endpoint="/v1/completions"'), 1)
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.server.metrics_port}/metrics") as r:
            self.assertIn("moeserve_http_requests_total", r.read().decode())

    def test_zz_client_leaving_mid_stream_frees_its_kv(self):
        stream = self.client.completions.create(
            model=SERVED_MODEL_NAME, prompt="In the beginning", max_tokens=2000, stream=True,
            extra_body={"ignore_eos": True})
        for i, _ in enumerate(stream):
            if i == 2:
                break
        stream.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = self.server.http("GET", "/metrics", key=None)[1]
            if (metric_value(text, "moeserve_num_requests_running") == 0
                    and metric_value(text, "moeserve_kv_cache_usage_perc") == 0):
                break
            time.sleep(0.1)
        else:
            self.fail("the abandoned stream still runs:\n" + text)


def make_certificates(directory):
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=directory)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=test-ca")
    for name, extra in (("server", "subjectAltName=IP:127.0.0.1"),
                        ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}")
        with open(os.path.join(directory, f"{name}.ext"), "w") as f:
            f.write(extra + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return {n: os.path.join(directory, n) for n in
            ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


class ReasoningAndDrainTest(unittest.TestCase):
    def test_chat_template_flag_replaces_the_checkpoints(self):
        directory = tempfile.mkdtemp(prefix="template_", dir=ARGS.workdir)
        path = os.path.join(directory, "plain.jinja")
        with open(path, "w") as f:
            f.write("{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n"
                    "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}")
        server = Server(["--chat-template", path])
        try:
            messages = [{"role": "user", "content": "Who made the light?"}]
            got = json.loads(server.http("POST", "/tokenize", {"messages": messages})[1])
            # The same text through the plain tokenizer: BOS comes from the checkpoint's
            # special tokens, written by the template, so none is added.
            bos = json.loads(server.http("POST", "/tokenize", {"prompt": ""})[1])["tokens"]
            want = json.loads(server.http("POST", "/tokenize", {
                "prompt": "[user] Who made the light?\n[assistant] ",
                "add_special_tokens": False})[1])["tokens"]
            self.assertEqual(got["tokens"], bos + want)
        finally:
            self.assertEqual(server.stop(), 0)
        # A template that does not parse is a startup error naming the flag and the line.
        with open(path, "w") as f:
            f.write("line one\n{% if %}")
        broken = subprocess.run([ARGS.server, "--model", ARGS.model, "--port", "0",
                                 "--metrics-port", "0", "--http-port", "-1",
                                 "--chat-template", path], capture_output=True, text=True,
                                timeout=120)
        self.assertEqual(broken.returncode, 1)
        self.assertIn("--chat-template", broken.stderr + broken.stdout)
        self.assertIn("line 2", broken.stderr + broken.stdout)

    def test_https_and_client_certificates(self):
        certs = make_certificates(tempfile.mkdtemp(prefix="certs_", dir=ARGS.workdir))
        server = Server(["--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"],
                         "--tls-client-ca", certs["ca.pem"]])
        try:
            url = f"https://127.0.0.1:{server.http_port}"
            body = json.dumps({"prompt": "Let there be", "max_tokens": 3, "temperature": 0})
            def curl(*extra):
                return subprocess.run(
                    ["curl", "-sS", "--max-time", "30", "--cacert", certs["ca.pem"], "-H",
                     "Authorization: Bearer " + API_KEY, "-H", "Content-Type: application/json",
                     "-o", "-", "-w", "\n%{http_code}"] + list(extra),
                    capture_output=True, text=True)
            ok = curl("--cert", certs["client.pem"], "--key", certs["client.key"], "-d", body,
                      url + "/v1/completions")
            self.assertTrue(ok.stdout.endswith("\n200"), ok.stdout + ok.stderr)
            self.assertEqual(json.loads(ok.stdout.rsplit("\n", 1)[0])["usage"]
                             ["completion_tokens"], 3)
            # Without a client certificate: refused (401), nothing generated.
            no_cert = curl("-d", body, url + "/v1/completions")
            self.assertTrue(no_cert.stdout.endswith("\n401"), no_cert.stdout + no_cert.stderr)
            # Plain HTTP to the TLS port gets no answer.
            plain = subprocess.run(["curl", "-sS", "--max-time", "5",
                                    f"http://127.0.0.1:{server.http_port}/health"],
                                   capture_output=True, text=True)
            self.assertNotEqual(plain.returncode, 0)
        finally:
            self.assertEqual(server.stop(), 0)

    def test_reasoning_parser_splits_think_output(self):
        # The model is random: its output never closes a <think>, so all of it is reasoning and
        # the answer is null; the reasoning equals the plain output of the same greedy request.
        plain = Server()
        parsed = Server(["--reasoning-parser", "deepseek_r1"])
        try:
            kw = dict(model=SERVED_MODEL_NAME, temperature=0, max_tokens=10,
                      messages=[{"role": "user", "content": "Think."}],
                      extra_body={"ignore_eos": True})
            want = plain.client().chat.completions.create(**kw).choices[0].message.content
            got = parsed.client().chat.completions.create(**kw)
            raw = got.choices[0].message.model_extra or {}
            self.assertNotIn("</think>", want)
            self.assertEqual(raw.get("reasoning_content"), want.removeprefix("<think>"))
            self.assertIsNone(got.choices[0].message.content)
            chunks = list(parsed.client().chat.completions.create(stream=True, **kw))
            streamed = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content")
                               or "" for c in chunks)
            self.assertEqual(streamed, raw.get("reasoning_content"))
        finally:
            plain.stop()
            parsed.stop()

    def test_sigterm_drains_a_running_stream(self):
        server = Server()
        stream = server.client().completions.create(
            model=SERVED_MODEL_NAME, prompt="In the beginning", max_tokens=40, stream=True,
            temperature=0, extra_body={"ignore_eos": True})
        it = iter(stream)
        first = next(it)
        server.process.send_signal(signal.SIGTERM)
        rest = list(it)
        text = first.choices[0].text + "".join(c.choices[0].text for c in rest if c.choices)
        self.assertEqual(rest[-1].choices[0].finish_reason, "length")
        self.assertGreater(len(text), 0)
        self.assertEqual(server.process.wait(timeout=60), 0, server.log())


def main():
    global ARGS, openai
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--make-model", required=True)
    parser.add_argument("--cli", required=True)
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--workdir", required=True)
    ARGS, rest = parser.parse_known_args()
    os.makedirs(ARGS.workdir, exist_ok=True)
    ensure_venv(ARGS.workdir)
    import openai as openai_module
    openai = openai_module
    ARGS.model = ensure_checkpoint(ARGS.make_model, ARGS.checkpoints)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
