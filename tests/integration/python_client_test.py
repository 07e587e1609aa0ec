#!/usr/bin/python3
"""moeserve through an independent client: Python grpcio with stubs generated from our proto.

Starts the real `moeserve` binary (port 0, --port-file) on a tiny random DeepSeek-V3 model and
checks, over the wire only: health and reflection, model info and tokenize, 40 concurrent
streams with mixed sampling parameters (stream shape, counts, logprobs, stop strings, seeded
and greedy reproducibility), a table of bad requests (each gets its status code and names the
field, and the server keeps serving), duplicate request ids and deadlines, cancellation
freeing the KV cache (seen in /metrics), and a SIGTERM drain that exits 0.

CTest runs it with /usr/bin/python3 (Debian's grpcio works only there):
  python_client_test.py --server BIN --make-model BIN --stubs DIR --checkpoints DIR --workdir DIR
"""

import argparse
import concurrent.futures
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

from test_support import ensure_checkpoint, metric_value

ARGS = None  # parsed command line, set in main()
SERVED_MODEL_NAME = "py-test-model"

# Generated in the build tree (see tests/integration/CMakeLists.txt); imported in main().
grpc = pb = pb_grpc = health_pb2 = health_pb2_grpc = reflection_pb2 = reflection_pb2_grpc = None



class ServerProcess:
    """The moeserve binary on 127.0.0.1 with ephemeral ports, logging to a file."""

    def __init__(self, binary, model_dir, workdir, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="moeserve_py_", dir=workdir)
        self.port_file = os.path.join(self.dir, "ports.json")
        self.log_path = os.path.join(self.dir, "server.log")
        self.command = [binary, "--model", model_dir, "--served-model-name", SERVED_MODEL_NAME,
                        "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--http-port", "-1",
                        "--port-file", self.port_file, "--shutdown-grace-seconds", "30"]
        self.command += list(extra_args)
        self.process = None
        self.grpc_port = self.metrics_port = None

    def start(self, timeout=120, preexec_fn=None, env=None):
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=preexec_fn, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moeserve exited with {self.process.returncode} during "
                                   f"startup; log:\n{self.log()}")
            try:
                with open(self.port_file) as f:
                    ports = json.load(f)
                self.grpc_port, self.metrics_port = ports["grpc_port"], ports["metrics_port"]
                return
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        raise RuntimeError(f"moeserve did not write {self.port_file} in {timeout} s; "
                           f"log:\n{self.log()}")

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, timeout=60):
        """SIGTERM, then the exit status (None if it had to be killed)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None



class MoeserveTest(unittest.TestCase):
    """One server for the whole class; tests run in name order and the last one stops it."""

    server = None
    channel = None

    @classmethod
    def setUpClass(cls):
        model_dir = ensure_checkpoint(ARGS.make_model, ARGS.checkpoints)
        os.makedirs(ARGS.workdir, exist_ok=True)
        cls.server = ServerProcess(ARGS.server, model_dir, ARGS.workdir)
        cls.server.start()
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{cls.server.grpc_port}")
        cls.stub = pb_grpc.MoeserveStub(cls.channel)
        cls.info = cls.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)

    @classmethod
    def tearDownClass(cls):
        if cls.channel is not None:
            cls.channel.close()
        if cls.server is not None:
            cls.server.stop()

    def fail_with_log(self, message):
        self.fail(f"{message}\n--- server log ({self.server.log_path}) ---\n"
                  f"{self.server.log()[-4000:]}")

    def metrics(self):
        url = f"http://127.0.0.1:{self.server.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    def generate(self, request, timeout=120):
        """All responses of one Generate stream."""
        return list(self.stub.Generate(request, timeout=timeout))

    def greedy_request(self, text="In the beginning God created", max_tokens=8, **sampling):
        return pb.GenerateRequest(text=text, sampling_params=pb.SamplingParams(
            temperature=0.0, max_tokens=max_tokens, ignore_eos=True, **sampling))

    # --- health, reflection, unary RPCs ---------------------------------------------------

    def test_01_health_is_serving(self):
        health = health_pb2_grpc.HealthStub(self.channel)
        response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        self.assertEqual(response.status, health_pb2.HealthCheckResponse.SERVING,
                         f"health is {health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)}")

    # The services grpcurl must be able to list, describe and call with no .proto file.
    EXPOSED_SERVICES = ("moeserve.v1.Moeserve", "grpc.health.v1.Health",
                        "grpc.reflection.v1.ServerReflection",
                        "grpc.reflection.v1alpha.ServerReflection")

    def reflect(self, package, requests):
        """Sends `requests` on one ServerReflectionInfo stream of grpc.reflection.<package>.

        The v1alpha stubs serve both packages: v1 is v1alpha renamed, the same messages with the
        same field numbers, so only the method path differs (and Debian generates no v1 module
        that could sit beside v1alpha's reflection_pb2)."""
        call = self.channel.stream_stream(
            f"/grpc.reflection.{package}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        responses = list(call(iter(requests), timeout=30))
        self.assertEqual(len(responses), len(requests))
        for response in responses:
            self.assertFalse(response.HasField("error_response"), response)
        return responses

    @staticmethod
    def pool_of(responses):
        """A fresh descriptor pool holding every reflected file, each added after its imports."""
        from google.protobuf import descriptor_pb2, descriptor_pool
        files = {}
        for response in responses:
            for raw in response.file_descriptor_response.file_descriptor_proto:
                proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
                files[proto.name] = proto
        pool, added = descriptor_pool.DescriptorPool(), set()

        def add(name):
            if name not in added:
                for dependency in files[name].dependency:
                    add(dependency)
                pool.Add(files[name])
                added.add(name)
        for name in files:
            add(name)
        return pool

    def test_02_reflection_lists_describes_and_calls_like_grpcurl(self):
        from google.protobuf import message_factory
        for package in ("v1", "v1alpha"):
            with self.subTest(package=package):
                # grpcurl list
                listed = self.reflect(package, [reflection_pb2.ServerReflectionRequest(
                    list_services="")])[0]
                services = {s.name for s in listed.list_services_response.service}
                self.assertTrue(set(self.EXPOSED_SERVICES) <= services,
                                f"reflection lists {sorted(services)}")

                # grpcurl describe SERVICE, for each: every method's types resolve.
                pool = self.pool_of(self.reflect(package, [
                    reflection_pb2.ServerReflectionRequest(file_containing_symbol=name)
                    for name in self.EXPOSED_SERVICES]))
                for name in self.EXPOSED_SERVICES:
                    service = pool.FindServiceByName(name)
                    self.assertTrue(service.methods, name)
                    for method in service.methods:
                        pool.FindMessageTypeByName(method.input_type.full_name)
                        pool.FindMessageTypeByName(method.output_type.full_name)
                methods = {m.name for m in pool.FindServiceByName("moeserve.v1.Moeserve").methods}
                self.assertTrue({"Generate", "Tokenize", "GetModelInfo", "GetServerInfo",
                                 "Abort"} <= methods, f"reflection describes methods {methods}")

                # grpcurl -d '{"service": ""}' grpc.health.v1.Health/Check, with message classes
                # made from the reflected descriptors only.
                check = pool.FindMethodByName("grpc.health.v1.Health.Check")
                factory = message_factory.MessageFactory(pool)
                request_class = factory.GetPrototype(check.input_type)
                response_class = factory.GetPrototype(check.output_type)
                call = self.channel.unary_unary(
                    f"/{check.containing_service.full_name}/{check.name}",
                    request_serializer=request_class.SerializeToString,
                    response_deserializer=response_class.FromString)
                response = call(request_class(service=""), timeout=10)
                status = check.output_type.fields_by_name["status"].enum_type
                self.assertEqual(status.values_by_number[response.status].name, "SERVING")

    def test_03_model_and_server_info(self):
        self.assertEqual(self.info.served_model_name, SERVED_MODEL_NAME)
        self.assertEqual(self.info.architecture, "DeepseekV3ForCausalLM")
        self.assertGreater(self.info.vocab_size, 0)
        self.assertGreater(self.info.max_context_length, 0)
        self.assertGreater(self.info.kv_cache_capacity_tokens, 0)
        server = self.stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=30)
        self.assertFalse(server.is_draining)
        self.assertGreater(server.uptime_seconds, 0)

    def test_04_tokenize_gives_ids_in_vocab(self):
        ids = self.stub.Tokenize(pb.TokenizeRequest(text="In the beginning"), timeout=30).token_ids
        self.assertGreater(len(ids), 0)
        self.assertTrue(all(i < self.info.vocab_size for i in ids), ids)
        without = self.stub.Tokenize(pb.TokenizeRequest(text="In the beginning",
                                                        add_special_tokens=False), timeout=30)
        self.assertLessEqual(len(without.token_ids), len(ids))

    # --- concurrent streams -------------------------------------------------------------------

    def concurrent_specs(self):
        """40 requests: (name, request, group). Requests of one group must produce equal ids."""
        prompt = "In the beginning God created the heaven and the earth."
        prompt_ids = list(self.stub.Tokenize(pb.TokenizeRequest(text=prompt), timeout=30).token_ids)
        vocab = self.info.vocab_size
        specs = []

        def add(name, group=None, text=prompt, ids=None, **sampling):
            request = pb.GenerateRequest(sampling_params=pb.SamplingParams(**sampling))
            if ids is not None:
                request.tokenized.input_ids.extend(ids)
            else:
                request.text = text
            specs.append((name, request, group))

        for i in range(4):  # greedy, alone or batched, text or the same ids: one answer
            add(f"greedy-text-{i}", "greedy", temperature=0, max_tokens=12, ignore_eos=True)
        for i in range(2):
            add(f"greedy-ids-{i}", "greedy", ids=prompt_ids, temperature=0, max_tokens=12,
                ignore_eos=True)
        for i in range(2):
            add(f"greedy-logprobs-{i}", "greedy", temperature=0, max_tokens=12, ignore_eos=True,
                logprobs=3)
        seeded = [dict(temperature=0.8), dict(temperature=1.0, top_k=5), dict(top_p=0.9),
                  dict(min_p=0.1, temperature=1.2), dict(repetition_penalty=1.3),
                  dict(frequency_penalty=0.5, presence_penalty=0.5),
                  dict(temperature=0.7, top_k=20, top_p=0.8, logprobs=0)]
        for k, params in enumerate(seeded):  # seeded sampling reproduces, whatever the batch
            for i in range(2):
                add(f"seeded-{k}-{i}", f"seed-{k}", seed=1000 + k, max_tokens=10,
                    ignore_eos=True, **params)
        for i in range(4):
            add(f"stop-e-{i}", stop=["e"], max_tokens=16, seed=i, temperature=1.0)
        for i in range(2):
            add(f"stop-e-included-{i}", stop=["e", "th"], include_stop_str_in_output=True,
                max_tokens=16, seed=10 + i)
        add("logit-bias", "bias", temperature=0, max_tokens=6, ignore_eos=True,
            logit_bias={7: 100.0})
        add("min-tokens", min_tokens=5, max_tokens=9, seed=3)
        add("ids-short", ids=[1, 2, 3], max_tokens=5, seed=4, logprobs=5)
        add("top-logprobs-20", temperature=0.5, seed=5, max_tokens=4, logprobs=20)
        add("one-token", temperature=0, max_tokens=1)
        add("random-seedless", max_tokens=8)
        for i in range(4):
            add(f"priority-{i}", max_tokens=6 + i, seed=20 + i, ignore_eos=True)
        for i, spec in enumerate(specs):
            spec[1].priority = i % 3
            if i % 5 == 0:
                spec[1].request_id = f"py-concurrent-{i}"
        self.assertTrue(all(i < vocab for i in prompt_ids))
        return specs

    def check_stream(self, name, request, responses):
        """The shape of one finished stream; returns the complete message."""
        where = f"request {name}"
        self.assertGreater(len(responses), 0, f"{where}: empty stream")
        kinds = [r.WhichOneof("response") for r in responses]
        self.assertEqual(kinds.count("complete"), 1, f"{where}: kinds {kinds}")
        self.assertEqual(kinds[-1], "complete", f"{where}: complete is not last ({kinds})")
        complete = responses[-1].complete
        streamed, text, count = [], "", 0
        sampling = request.sampling_params
        for r in responses[:-1]:
            chunk = r.chunk
            streamed.extend(chunk.token_ids)
            text += chunk.text
            count += len(chunk.token_ids)
            self.assertEqual(chunk.completion_tokens, count, f"{where}: cumulative count")
            if sampling.HasField("logprobs") and chunk.token_ids:
                lp = chunk.output_logprobs
                self.assertEqual(list(lp.token_ids), list(chunk.token_ids), where)
                self.assertEqual(len(lp.token_logprobs), len(chunk.token_ids), where)
                self.assertTrue(all(v <= 1e-6 for v in lp.token_logprobs), f"{where}: {lp}")
                if sampling.logprobs >= 1:
                    self.assertEqual(len(lp.top_logprobs), len(chunk.token_ids), where)
                    for top in lp.top_logprobs:
                        self.assertEqual(len(top.values), sampling.logprobs, where)
                        self.assertEqual(list(top.values), sorted(top.values, reverse=True), where)
                    if sampling.HasField("temperature") and sampling.temperature == 0:
                        self.assertEqual([t.token_ids[0] for t in lp.top_logprobs],
                                         list(chunk.token_ids), f"{where}: greedy is not top-1")
        self.assertEqual(list(complete.output_ids), streamed, f"{where}: output_ids")
        self.assertEqual(complete.completion_tokens, len(streamed), f"{where}: completion_tokens")
        self.assertIn(complete.finish_reason, ("stop", "length"), where)
        max_tokens = sampling.max_tokens if sampling.HasField("max_tokens") else 16
        self.assertLessEqual(complete.completion_tokens, max_tokens, where)
        self.assertGreaterEqual(complete.completion_tokens, min(sampling.min_tokens, max_tokens),
                                where)
        if request.WhichOneof("input") == "tokenized":
            self.assertEqual(complete.prompt_tokens, len(request.tokenized.input_ids), where)
        else:
            self.assertGreater(complete.prompt_tokens, 0, where)
        only_length = sampling.ignore_eos and not sampling.stop and not sampling.stop_token_ids
        if only_length:
            self.assertEqual(complete.finish_reason, "length", where)
            self.assertEqual(complete.completion_tokens, max_tokens, where)
        for stop in sampling.stop:
            if not sampling.include_stop_str_in_output:
                self.assertNotIn(stop, text, f"{where}: stop string in the text")
        if complete.HasField("matched_stop_str"):
            self.assertEqual(complete.finish_reason, "stop", where)
            self.assertIn(complete.matched_stop_str, list(sampling.stop), where)
            if sampling.include_stop_str_in_output:
                self.assertTrue(text.endswith(complete.matched_stop_str), f"{where}: {text!r}")
        for token_id, bias in sampling.logit_bias.items():
            if bias >= 100 and sampling.HasField("temperature") and sampling.temperature == 0:
                self.assertEqual(set(streamed), {token_id}, f"{where}: bias ignored")
        return complete

    def test_10_concurrent_streams_with_mixed_parameters(self):
        specs = self.concurrent_specs()
        self.assertGreaterEqual(len(specs), 32)
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(specs)) as pool:
            futures = [pool.submit(self.generate, request) for _, request, _ in specs]
            results = []
            for (name, request, _), future in zip(specs, futures):
                try:
                    results.append(future.result())
                except grpc.RpcError as e:
                    self.fail_with_log(f"request {name} failed: {e.code().name}: {e.details()}")
        groups = {}
        for (name, request, group), responses in zip(specs, results):
            complete = self.check_stream(name, request, responses)
            if group is not None:
                groups.setdefault(group, []).append((name, list(complete.output_ids)))
        for group, outputs in groups.items():
            first_name, first = outputs[0]
            for name, ids in outputs[1:]:
                self.assertEqual(ids, first, f"group {group}: {name} differs from {first_name}")

    def test_11_stop_token_id_ends_the_stream(self):
        greedy = self.generate(self.greedy_request(max_tokens=8))[-1].complete.output_ids
        stop_id = greedy[3]
        first = list(greedy).index(stop_id)
        request = self.greedy_request(max_tokens=8, stop_token_ids=[stop_id])
        complete = self.check_stream("stop-token", request, self.generate(request))
        self.assertEqual(complete.finish_reason, "stop")
        self.assertEqual(complete.matched_token_id, stop_id)
        self.assertEqual(list(complete.output_ids)[:first], list(greedy)[:first])
        self.assertLessEqual(len(complete.output_ids), first + 1)

    # --- bad input ----------------------------------------------------------------------------

    def raw_generate(self, payload, timeout=30):
        """Generate with a hand-encoded request (what Python's protobuf refuses to build)."""
        call = self.channel.unary_stream("/moeserve.v1.Moeserve/Generate",
                                         request_serializer=None,
                                         response_deserializer=pb.GenerateResponse.FromString)
        return list(call(payload, timeout=timeout))

    def bad_request_table(self):
        """(name, request or raw bytes, expected code, text the details must contain)."""
        vocab, context = self.info.vocab_size, self.info.max_context_length
        invalid = grpc.StatusCode.INVALID_ARGUMENT

        def req(text="hello", **sampling):
            sampling.setdefault("max_tokens", 2)
            return pb.GenerateRequest(text=text, sampling_params=pb.SamplingParams(**sampling))

        def ids_req(ids, **sampling):
            request = req(**sampling)
            request.tokenized.input_ids.extend(ids)  # replaces text (oneof)
            return request

        def field(number, wire_type, payload):
            tag = bytes(encode_varint((number << 3) | wire_type))
            if wire_type == 2:
                return tag + bytes(encode_varint(len(payload))) + payload
            return tag + payload

        max_two = field(8, 0, b"\x02")
        return [
            ("empty text", req(text=""), invalid, "text"),
            ("no input", pb.GenerateRequest(sampling_params=pb.SamplingParams(max_tokens=2)),
             invalid, "input"),
            ("empty input_ids", pb.GenerateRequest(
                tokenized=pb.TokenizedInput(), sampling_params=pb.SamplingParams(max_tokens=2)),
             invalid, "tokenized.input_ids"),
            ("token id >= vocab", ids_req([1, vocab]), invalid, "tokenized.input_ids[1]"),
            ("prompt fills the context", ids_req([1] * context), invalid, "tokenized.input_ids"),
            ("temperature NaN", req(temperature=math.nan), invalid, "sampling_params.temperature"),
            ("temperature inf", req(temperature=math.inf), invalid, "sampling_params.temperature"),
            ("temperature < 0", req(temperature=-0.5), invalid, "sampling_params.temperature"),
            ("top_p 0", req(top_p=0.0), invalid, "sampling_params.top_p"),
            ("top_p 1.5", req(top_p=1.5), invalid, "sampling_params.top_p"),
            ("top_p NaN", req(top_p=math.nan), invalid, "sampling_params.top_p"),
            ("top_k -2", req(top_k=-2), invalid, "sampling_params.top_k"),
            ("top_k 0", req(top_k=0), invalid, "sampling_params.top_k"),
            ("min_p 2", req(min_p=2.0), invalid, "sampling_params.min_p"),
            ("repetition_penalty 0", req(repetition_penalty=0.0), invalid,
             "sampling_params.repetition_penalty"),
            ("frequency_penalty 3", req(frequency_penalty=3.0), invalid,
             "sampling_params.frequency_penalty"),
            ("presence_penalty -3", req(presence_penalty=-3.0), invalid,
             "sampling_params.presence_penalty"),
            ("logprobs 21", req(logprobs=21), invalid, "sampling_params.logprobs"),
            ("logprobs -1", req(logprobs=-1), invalid, "sampling_params.logprobs"),
            ("max_tokens 0", req(max_tokens=0), invalid, "sampling_params.max_tokens"),
            ("max_tokens beyond the context", req(max_tokens=context), invalid,
             "sampling_params.max_tokens"),
            ("min_tokens > max_tokens", req(max_tokens=4, min_tokens=5), invalid,
             "sampling_params.min_tokens"),
            ("too many stop strings", req(stop=[f"s{i}" for i in range(100)]), invalid,
             "sampling_params.stop"),
            ("empty stop string", req(stop=["ok", ""]), invalid, "sampling_params.stop[1]"),
            ("stop_token_id >= vocab", req(stop_token_ids=[vocab]), invalid,
             "sampling_params.stop_token_ids[0]"),
            ("logit_bias id >= vocab", req(logit_bias={vocab + 5: 1.0}), invalid,
             "sampling_params.logit_bias"),
            ("logit_bias 1000", req(logit_bias={3: 1000.0}), invalid,
             "sampling_params.logit_bias"),
            ("request_id too long", pb.GenerateRequest(request_id="r" * 300, text="hi"), invalid,
             "request_id"),
            ("request_id not printable", pb.GenerateRequest(request_id="a\nb", text="hi"),
             invalid, "request_id"),
            ("text invalid UTF-8", field(3, 2, b"ab\xffcd") + field(4, 2, max_two), invalid,
             "text"),
            ("original_text invalid UTF-8",
             field(2, 2, field(1, 2, b"\xc3\x28") + field(2, 2, b"\x05")) + field(4, 2, max_two),
             invalid, "tokenized.original_text"),
            ("stop string invalid UTF-8",
             field(3, 2, b"hi") + field(4, 2, max_two + field(10, 2, b"\xff\xfe")), invalid,
             "sampling_params.stop[0]"),
            ("unknown field", field(3, 2, b"hi") + field(4, 2, max_two) + field(99, 0, b"\x01"),
             invalid, "unknown field"),
            ("unknown sampling field", field(3, 2, b"hi") + field(4, 2, max_two +
                                                                  field(50, 0, b"\x01")),
             invalid, "sampling_params"),
        ]

    def test_20_bad_requests_get_their_code_and_the_server_keeps_serving(self):
        table = self.bad_request_table()
        self.assertGreaterEqual(len(table), 20)
        failures = []
        for name, request, code, needle in table:
            try:
                if isinstance(request, bytes):
                    responses = self.raw_generate(request)
                else:
                    responses = self.generate(request, timeout=30)
                failures.append(f"{name}: accepted ({len(responses)} responses), want {code.name}")
            except grpc.RpcError as e:
                if e.code() != code or needle not in (e.details() or ""):
                    failures.append(f"{name}: got {e.code().name} {e.details()!r}, "
                                    f"want {code.name} naming {needle!r}")
        # Tokenize validates its text too.
        try:
            call = self.channel.unary_unary("/moeserve.v1.Moeserve/Tokenize",
                                            request_serializer=None,
                                            response_deserializer=pb.TokenizeResponse.FromString)
            call(b"\x0a\x02\xff\xfe", timeout=30)
            failures.append("Tokenize invalid UTF-8: accepted")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.INVALID_ARGUMENT or "text" not in (e.details() or ""):
                failures.append(f"Tokenize invalid UTF-8: got {e.code().name} {e.details()!r}")
        if failures:
            self.fail_with_log(f"{len(failures)} of {len(table) + 1} bad requests were not "
                               "rejected as expected:\n  " + "\n  ".join(failures))
        # Still serving, and every rejected request left nothing behind.
        complete = self.generate(self.greedy_request(max_tokens=4))[-1].complete
        self.assertEqual(complete.completion_tokens, 4)
        server = self.stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=30)
        self.assertEqual(server.active_requests + server.queued_requests, 0)

    def test_21_duplicate_live_request_id_is_already_exists(self):
        long_request = self.greedy_request(max_tokens=self.info.max_context_length // 2)
        long_request.request_id = "py-duplicate"
        stream = self.stub.Generate(long_request, timeout=120)
        try:
            next(stream)  # admitted and running
            try:
                self.generate(pb.GenerateRequest(request_id="py-duplicate", text="hi",
                                                 sampling_params=pb.SamplingParams(max_tokens=2)),
                              timeout=30)
                self.fail_with_log("a second live request with the same id was accepted")
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.ALREADY_EXISTS, e.details())
                self.assertIn("request_id", e.details())
        finally:
            stream.cancel()

    def test_22_expired_deadline_is_deadline_exceeded(self):
        request = self.greedy_request(max_tokens=self.info.max_context_length // 2)
        with self.assertRaises(grpc.RpcError) as raised:
            self.generate(request, timeout=0.5)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)

    # --- cancellation frees the KV cache -------------------------------------------------------

    def wait_for_metrics(self, what, predicate, timeout=10):
        """Polls /metrics until predicate(running, kv_usage) holds (gauges lag a step)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.metrics()
            running = metric_value(text, "moeserve_num_requests_running")
            usage = metric_value(text, "moeserve_kv_cache_usage_perc")
            if running is not None and usage is not None and predicate(running, usage):
                return
            if time.monotonic() > deadline:
                self.fail_with_log(f"{what}: after {timeout} s /metrics shows "
                                   f"moeserve_num_requests_running={running} "
                                   f"moeserve_kv_cache_usage_perc={usage}")
            time.sleep(0.1)

    def wait_for_idle_metrics(self, what, timeout=10):
        self.wait_for_metrics(what, lambda running, usage: running == 0 and usage == 0, timeout)

    def test_30_cancel_mid_stream_frees_kv_blocks(self):
        self.wait_for_idle_metrics("before the test")  # earlier cancels settled
        request = self.greedy_request(
            text="In the beginning God created the heaven and the earth. " * 4,
            max_tokens=self.info.max_context_length // 2)
        stream = self.stub.Generate(request, timeout=120)
        received = 0
        for response in stream:
            self.assertEqual(response.WhichOneof("response"), "chunk")
            received += 1
            if received == 3:
                break
        self.wait_for_metrics("while streaming (running 1, KV in use)",
                              lambda running, usage: running == 1 and usage > 0)
        stream.cancel()
        self.wait_for_idle_metrics("after call.cancel()")

    # --- shutdown ---------------------------------------------------------------------------

    def test_99_sigterm_drains_in_flight_stream_and_exits_zero(self):
        request = self.greedy_request(max_tokens=24)
        stream = self.stub.Generate(request, timeout=120)
        responses = [next(stream)]  # in flight when the signal comes
        self.server.process.send_signal(signal.SIGTERM)
        try:
            responses.extend(stream)
        except grpc.RpcError as e:
            self.fail_with_log(f"the in-flight stream was not drained: {e.code().name}: "
                               f"{e.details()}")
        self.check_stream("in flight at SIGTERM", request, responses)
        try:
            status = self.server.process.wait(60)
        except subprocess.TimeoutExpired:
            self.fail_with_log("moeserve did not exit within 60 s of SIGTERM")
        self.assertEqual(status, 0, f"exit status {status}; log:\n{self.server.log()[-4000:]}")


def encode_varint(value):
    out = []
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return out


def main():
    global ARGS, grpc, pb, pb_grpc, health_pb2, health_pb2_grpc, reflection_pb2
    global reflection_pb2_grpc
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="the moeserve binary")
    parser.add_argument("--make-model", required=True, help="the moeserve-make-model binary")
    parser.add_argument("--stubs", required=True, help="directory of the generated Python stubs")
    parser.add_argument("--checkpoints", required=True, help="shared test checkpoint directory")
    parser.add_argument("--workdir", default=tempfile.gettempdir(), help="logs and port files")
    ARGS, rest = parser.parse_known_args()
    sys.path.insert(0, ARGS.stubs)
    import grpc as grpc_module
    from moeserve.v1 import moeserve_pb2, moeserve_pb2_grpc
    import health_pb2 as health, health_pb2_grpc as health_grpc
    import reflection_pb2 as reflection, reflection_pb2_grpc as reflection_grpc
    grpc, pb, pb_grpc = grpc_module, moeserve_pb2, moeserve_pb2_grpc
    health_pb2, health_pb2_grpc = health, health_grpc
    reflection_pb2, reflection_pb2_grpc = reflection, reflection_grpc
    program = unittest.main(argv=[sys.argv[0], "-v"] + rest, exit=False)
    sys.exit(0 if program.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
