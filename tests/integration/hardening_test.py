#!/usr/bin/python3
"""Issue 21 on the wire: the transport and startup limits of the real `moeserve` binary.

Each test reproduces one row of the issue's table against a server on 127.0.0.1 and checks the
fix, with clients that misbehave at the HTTP/2 level (python3-h2 speaking raw frames: zero
receive windows, pre-compressed gzip bombs, stalled handshakes), plain sockets, signals and
broken startup files. It prints the figures docs/hardening.md quotes (RSS during a compression
bomb, time to accept after descriptor exhaustion, other clients' latency while one connection
misbehaves).

CTest runs it with /usr/bin/python3 (Debian's grpcio and h2 work only there):
  hardening_test.py --server BIN --make-model BIN --stubs DIR --checkpoints DIR --workdir DIR
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request
import zlib

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import python_client_test as shared  # noqa: E402  (ensure_checkpoint, ServerProcess, metrics)

ARGS = None
grpc = pb = pb_grpc = health_pb2 = health_pb2_grpc = None  # imported in main()

GRPC_STATUS_OK = 0
GRPC_STATUS_UNIMPLEMENTED = 12


def model_dir():
    return os.path.abspath(shared.ensure_checkpoint(ARGS.make_model, ARGS.checkpoints))


def start_server(*extra_args, limit_files=None, env=None):
    server = shared.ServerProcess(ARGS.server, model_dir(), ARGS.workdir,
                                  extra_args=list(extra_args))
    preexec = None
    if limit_files is not None:
        def preexec():
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit_files, limit_files))
    server.start(preexec_fn=preexec, env=env)
    return server


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def health_serving(port, timeout=2.0):
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
            return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def generate_request(max_tokens=1, text="Hello"):
    request = pb.GenerateRequest(text=text)
    request.sampling_params.max_tokens = max_tokens
    request.sampling_params.temperature = 0.0
    return request.SerializeToString()


def grpc_frame(payload, compressed=False):
    return struct.pack(">BI", 1 if compressed else 0, len(payload)) + payload


class RawHttp2Client:
    """One HTTP/2 connection driven frame by frame (h2), for what grpcio will not do."""

    def __init__(self, port, initial_window=None):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        if initial_window is not None:
            self.conn.local_settings = h2.settings.Settings(
                client=True,
                initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window})
        self.conn.initiate_connection()
        self.flush()
        self.responses = {}  # stream id -> {"headers": [...], "reset": code, "ended": bool}
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def start_call(self, path, headers=()):
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, [
            (":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", f"127.0.0.1:{self.port}"), ("content-type", "application/grpc"),
            ("te", "trailers")] + list(headers))
        self.responses[stream_id] = {"headers": [], "reset": None, "ended": False}
        return stream_id

    def send_body(self, stream_id, body, deadline):
        """Sends `body` as DATA within flow control; stops early if the server ends the stream."""
        sent = 0
        while sent < len(body):
            state = self.responses[stream_id]
            if state["reset"] is not None or state["ended"]:
                return sent
            window = min(self.conn.local_flow_control_window(stream_id),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump(0.2)
                if time.monotonic() > deadline:
                    raise TimeoutError("no flow-control window from the server")
                continue
            chunk = body[sent:sent + window]
            sent += len(chunk)
            self.conn.send_data(stream_id, chunk, end_stream=sent == len(body))
            self.flush()
        return sent

    def pump(self, timeout):
        """Reads and handles frames for up to `timeout` seconds."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except socket.timeout:
            return
        except OSError:
            self.closed = True
            return
        if not data:
            self.closed = True
            return
        for event in self.conn.receive_data(data):
            state = self.responses.get(getattr(event, "stream_id", None))
            if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                state["headers"] += list(event.headers)
            elif isinstance(event, h2.events.StreamReset) and state is not None:
                state["reset"] = event.error_code
            elif isinstance(event, h2.events.StreamEnded):
                state["ended"] = True
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.closed = True
        self.flush()

    def grpc_status(self, stream_id):
        for name, value in self.responses[stream_id]["headers"]:
            if name == "grpc-status":
                return int(value)
        return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def gzip_bomb(inflated_bytes):
    """A gzip stream of `inflated_bytes` zeros, compressed in pieces (never held inflated)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    parts = [compressor.compress(zeros) for _ in range(inflated_bytes >> 20)]
    parts.append(compressor.flush())
    return b"".join(parts)


class TransportLimitsTest(unittest.TestCase):
    """Rows 1-4 and 11 of the issue, each on its own server."""

    def test_row2_compressed_request_never_inflates(self):
        bomb = gzip_bomb(1 << 30)
        server = start_server("--api-key", "s3cret")
        try:
            before = rss_kib(server.process.pid, "VmHWM")
            clients = [RawHttp2Client(server.grpc_port) for _ in range(3)]
            calls = [c.start_call("/moeserve.v1.Moeserve/Generate",
                                  [("grpc-encoding", "gzip")]) for c in clients]
            senders = [threading.Thread(target=c.send_body,
                                        args=(s, grpc_frame(bomb, compressed=True),
                                              time.monotonic() + 60))
                       for c, s in zip(clients, calls)]
            for t in senders:
                t.start()
            for t in senders:
                t.join()
            deadline = time.monotonic() + 20
            for client, stream_id in zip(clients, calls):
                while client.grpc_status(stream_id) is None and not client.closed \
                        and client.responses[stream_id]["reset"] is None \
                        and time.monotonic() < deadline:
                    client.pump(0.2)
            statuses = [c.grpc_status(s) for c, s in zip(clients, calls)]
            peak_growth_mib = (rss_kib(server.process.pid, "VmHWM") - before) / 1024
            print(f"\n[row 2] three {len(bomb)}-byte gzip messages inflating to 1 GiB each: "
                  f"statuses {statuses}, server peak RSS growth {peak_growth_mib:.1f} MiB",
                  flush=True)
            for status in statuses:
                self.assertEqual(status, GRPC_STATUS_UNIMPLEMENTED, server.log()[-2000:])
            self.assertLess(peak_growth_mib, 64, "the server inflated the message")
            for c in clients:
                c.close()
            self.assertTrue(health_serving(server.grpc_port))
        finally:
            self.assertEqual(server.stop(), 0)

    def test_row3_one_connection_cannot_lock_others_out(self):
        server = start_server("--max-concurrent-streams", "64", "--max-streams-per-connection",
                              "16", "--stream-write-timeout", "2")
        try:
            hog = RawHttp2Client(server.grpc_port, initial_window=0)
            hog.pump(0.5)  # the server's SETTINGS
            advertised = hog.conn.remote_settings.max_concurrent_streams
            self.assertEqual(advertised, 16)
            opened = []
            for _ in range(2048):
                try:
                    stream_id = hog.start_call("/moeserve.v1.Moeserve/Generate")
                except h2.exceptions.TooManyStreamsError:
                    break
                hog.conn.send_data(stream_id, grpc_frame(generate_request()), end_stream=True)
                opened.append(stream_id)
            hog.flush()
            self.assertEqual(len(opened), 16)
            hog.pump(0.5)
            # Others are served while the hog holds its streams, unread.
            latencies = []
            with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
                stub = pb_grpc.MoeserveStub(channel)
                for _ in range(5):
                    begin = time.monotonic()
                    responses = list(stub.Generate(pb.GenerateRequest.FromString(
                        generate_request(4)), timeout=10))
                    latencies.append(time.monotonic() - begin)
                    self.assertTrue(responses[-1].HasField("complete"))
            # The stalled streams are cancelled after --stream-write-timeout.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not all(
                    hog.responses[s]["reset"] is not None or hog.responses[s]["ended"]
                    for s in opened):
                hog.pump(0.2)
            ended = sum(hog.responses[s]["reset"] is not None or hog.responses[s]["ended"]
                        for s in opened)
            print(f"\n[row 3] hog holds {len(opened)} unread streams (SETTINGS_MAX_CONCURRENT_"
                  f"STREAMS {advertised}); other client's 4-token Generate: "
                  f"{max(latencies) * 1000:.0f} ms worst of 5; {ended} stalled streams reset "
                  f"by --stream-write-timeout 2", flush=True)
            self.assertEqual(ended, len(opened), server.log()[-3000:])
            with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
                info = pb_grpc.MoeserveStub(channel).GetServerInfo(pb.GetServerInfoRequest())
                self.assertEqual(info.active_requests, 0)
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as reply:
                metrics = reply.read().decode()
            self.assertEqual(shared.metric_value(metrics, "moeserve_kv_cache_usage_perc"), 0.0)
            hog.close()
        finally:
            self.assertEqual(server.stop(), 0)

    def test_row3_clients_that_read_outlive_the_write_timeout(self):
        # The write watchdog fires many times over a long stream and re-arms while a write is in
        # flight: a client that reads, however long its stream, is never cut off.
        server = start_server("--stream-write-timeout", "0.1")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
                stub = pb_grpc.MoeserveStub(channel)
                request = pb.GenerateRequest.FromString(generate_request(600, "A long story:"))
                request.sampling_params.ignore_eos = True
                begin = time.monotonic()
                responses = []
                for response in stub.Generate(request, timeout=120):
                    responses.append(response)
                    if len(responses) % 50 == 0:
                        # Slow now and then, never stalled: the stream lasts at least 12 x 30 ms,
                        # several watchdog periods.
                        time.sleep(0.03)
                elapsed = time.monotonic() - begin
            tokens = sum(len(r.chunk.token_ids) for r in responses if r.HasField("chunk"))
            print(f"\n[row 3] 600-token stream over {elapsed:.1f} s with "
                  f"--stream-write-timeout 0.1: {tokens} tokens, "
                  f"{responses[-1].complete.finish_reason}", flush=True)
            self.assertEqual(responses[-1].complete.finish_reason, "length")
            self.assertEqual(tokens, 600)
        finally:
            self.assertEqual(server.stop(), 0)

    def test_row1_listener_survives_descriptor_exhaustion(self):
        server = start_server("--handshake-timeout", "30", limit_files=256)
        try:
            self.assertIn("open files: soft limit 256", server.log())
            sockets = []
            for _ in range(400):  # beyond the 256 descriptors the server may hold
                try:
                    sockets.append(socket.create_connection(("127.0.0.1", server.grpc_port),
                                                            timeout=5))
                except OSError:
                    break
            time.sleep(1.0)
            for s in sockets:
                s.close()
            begin = time.monotonic()
            while not health_serving(server.grpc_port, timeout=1.0):
                self.assertLess(time.monotonic() - begin, 10,
                                "the listener did not accept again:\n" + server.log()[-3000:])
                time.sleep(0.1)
            recovered = time.monotonic() - begin
            print(f"\n[row 1] {len(sockets)} idle connections against 256 descriptors, closed; "
                  f"health SERVING again after {recovered:.2f} s", flush=True)
            self.assertIsNone(server.process.poll())
        finally:
            self.assertEqual(server.stop(), 0)

    def test_row1_idle_and_silent_connections_are_closed(self):
        server = start_server("--handshake-timeout", "1", "--connection-idle-timeout", "1")
        try:
            silent = socket.create_connection(("127.0.0.1", server.grpc_port), timeout=10)
            idle = RawHttp2Client(server.grpc_port)
            begin = time.monotonic()
            silent.settimeout(10)
            closed_silent = False
            try:  # the server's SETTINGS arrive first; then, at the timeout, end of stream
                while not closed_silent:
                    closed_silent = silent.recv(4096) == b""
            except ConnectionResetError:
                closed_silent = True
            except socket.timeout:
                pass
            silent_after = time.monotonic() - begin
            deadline = time.monotonic() + 10
            while not idle.closed and time.monotonic() < deadline:
                idle.pump(0.2)
            idle_after = time.monotonic() - begin
            print(f"\n[row 1] silent socket closed after {silent_after:.1f} s "
                  f"(--handshake-timeout 1), idle HTTP/2 connection after {idle_after:.1f} s "
                  f"(--connection-idle-timeout 1)", flush=True)
            self.assertTrue(closed_silent)
            self.assertLess(silent_after, 5)
            self.assertTrue(idle.closed)
        finally:
            self.assertEqual(server.stop(), 0)

    def test_row1_stalled_tls_handshakes_are_closed(self):
        directory = tempfile.mkdtemp(prefix="moeserve_tls_", dir=ARGS.workdir)
        cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        server = start_server("--tls-cert", cert, "--tls-key", key, "--handshake-timeout", "1")
        try:
            stalled = []
            for _ in range(50):
                s = socket.create_connection(("127.0.0.1", server.grpc_port), timeout=10)
                s.sendall(b"\x16\x03\x01\x02\x00")  # the start of a ClientHello, then nothing
                stalled.append(s)
            begin = time.monotonic()
            closed = 0
            for s in stalled:
                try:
                    while s.recv(4096):
                        pass
                    closed += 1
                except ConnectionResetError:
                    closed += 1
                except socket.timeout:
                    pass
            elapsed = time.monotonic() - begin
            print(f"\n[row 1] {closed} of {len(stalled)} stalled TLS handshakes closed within "
                  f"{elapsed:.1f} s (--handshake-timeout 1)", flush=True)
            self.assertEqual(closed, len(stalled))
            self.assertLess(elapsed, 8)
            for s in stalled:
                s.close()
        finally:
            self.assertEqual(server.stop(), 0)

    def test_row4_slow_metrics_clients_do_not_delay_a_scrape(self):
        server = start_server()
        slow = []
        try:
            for _ in range(30):
                s = socket.create_connection(("127.0.0.1", server.metrics_port), timeout=5)
                s.sendall(b"G")
                slow.append(s)
            stop = threading.Event()

            def trickle():
                while not stop.is_set():
                    for s in slow:
                        try:
                            s.sendall(b"E")
                        except OSError:
                            pass
                    stop.wait(0.5)
            thread = threading.Thread(target=trickle)
            thread.start()
            time.sleep(0.3)
            begin = time.monotonic()
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=30) as reply:
                body = reply.read().decode()
            scrape = time.monotonic() - begin
            stop.set()
            thread.join()
            print(f"\n[row 4] scrape with 30 trickling sockets: {scrape * 1000:.0f} ms",
                  flush=True)
            self.assertIn("moeserve_", body)
            # The old server served the 30 slow sockets first, one request timeout each (60 s).
            self.assertLess(scrape, 5)
        finally:
            for s in slow:
                s.close()
            self.assertEqual(server.stop(), 0)


class MixedSoakTest(unittest.TestCase):
    """Every transport attack at once, for a while, against clients doing real work."""

    def test_soak_mixes_the_attacks_while_clients_are_served(self):
        seconds = float(os.environ.get("MOESERVE_HARDENING_SOAK_SECONDS", "8"))
        server = start_server("--max-streams-per-connection", "8", "--stream-write-timeout", "1",
                              "--handshake-timeout", "1", "--connection-idle-timeout", "1",
                              "--max-concurrent-streams", "256")
        stop = threading.Event()
        failures, served = [], []
        bomb = gzip_bomb(64 << 20)
        try:
            rss_start = rss_kib(server.process.pid)
            with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
                reference = [r for r in pb_grpc.MoeserveStub(channel).Generate(
                    pb.GenerateRequest.FromString(generate_request(12, "In the beginning")))]
            expected = [t for r in reference if r.HasField("chunk") for t in r.chunk.token_ids]

            def client():
                with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
                    stub = pb_grpc.MoeserveStub(channel)
                    while not stop.is_set():
                        try:
                            responses = list(stub.Generate(pb.GenerateRequest.FromString(
                                generate_request(12, "In the beginning")), timeout=30))
                            tokens = [t for r in responses if r.HasField("chunk")
                                      for t in r.chunk.token_ids]
                            if tokens != expected:
                                failures.append(f"greedy output changed: {tokens}")
                            served.append(1)
                        except grpc.RpcError as error:
                            failures.append(f"client: {error.code()} {error.details()}")

            def hog():
                while not stop.is_set():
                    c = RawHttp2Client(server.grpc_port, initial_window=0)
                    c.pump(0.2)
                    for _ in range(8):
                        try:
                            sid = c.start_call("/moeserve.v1.Moeserve/Generate")
                        except h2.exceptions.TooManyStreamsError:
                            break
                        c.conn.send_data(sid, grpc_frame(generate_request(50)), end_stream=True)
                    c.flush()
                    stop.wait(0.7)
                    c.close()

            def bomber():
                while not stop.is_set():
                    c = RawHttp2Client(server.grpc_port)
                    sid = c.start_call("/moeserve.v1.Moeserve/Generate", [("grpc-encoding", "gzip")])
                    try:
                        c.send_body(sid, grpc_frame(bomb, compressed=True), time.monotonic() + 10)
                    except (OSError, TimeoutError, h2.exceptions.ProtocolError):
                        pass
                    c.close()

            def slowloris():
                sockets = []
                while not stop.is_set():
                    try:
                        s = socket.create_connection(("127.0.0.1", server.metrics_port), timeout=2)
                        s.sendall(b"GET /met")
                        sockets.append(s)
                        raw = socket.create_connection(("127.0.0.1", server.grpc_port), timeout=2)
                        sockets.append(raw)
                    except OSError:
                        pass
                    stop.wait(0.1)
                for s in sockets:
                    s.close()

            def scraper():
                while not stop.is_set():
                    try:
                        with urllib.request.urlopen(
                                f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as r:
                            r.read()
                    except OSError as error:
                        failures.append(f"scrape: {error}")
                    stop.wait(0.3)

            def signaller():
                for sig in [signal.SIGUSR1, signal.SIGPIPE, signal.SIGALRM, signal.SIGUSR2] * 100:
                    if stop.wait(0.4):
                        return
                    server.process.send_signal(sig)

            threads = [threading.Thread(target=f) for f in
                       (client, client, client, hog, hog, bomber, slowloris, scraper, signaller)]
            for t in threads:
                t.start()
            time.sleep(seconds)
            stop.set()
            for t in threads:
                t.join(60)
            time.sleep(2.5)  # the last hogs' streams time out (--stream-write-timeout 1)
            with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
                info = pb_grpc.MoeserveStub(channel).GetServerInfo(pb.GetServerInfoRequest())
            rss_growth_mib = (rss_kib(server.process.pid) - rss_start) / 1024
            print(f"\n[soak] {seconds:.0f} s of hogs, 64 MiB gzip bombs, slow sockets and stray "
                  f"signals: {len(served)} client requests served, {len(failures)} failures, "
                  f"RSS {rss_growth_mib:+.1f} MiB", flush=True)
            self.assertEqual(failures, [])
            self.assertGreater(len(served), 0)
            self.assertTrue(health_serving(server.grpc_port))
            self.assertEqual(info.active_requests, 0)
            self.assertEqual(info.kv_cache_usage, 0.0)
            self.assertLess(rss_growth_mib, 64)
        finally:
            stop.set()
            self.assertEqual(server.stop(), 0, server.log()[-3000:])


class SignalsTest(unittest.TestCase):
    """Row 5: no signal but SIGKILL ends the process without a drain."""

    def long_stream(self, stub, max_tokens=1500):
        request = pb.GenerateRequest.FromString(generate_request(max_tokens, "A long story:"))
        request.sampling_params.ignore_eos = True
        return stub.Generate(request, timeout=120)

    def test_row5_stray_signals_are_ignored_during_a_stream(self):
        server = start_server()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
                stub = pb_grpc.MoeserveStub(channel)
                stream = self.long_stream(stub)
                next(stream)
                for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGPIPE,
                            signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO, signal.SIGRTMIN + 3):
                    server.process.send_signal(sig)
                    time.sleep(0.05)
                responses = list(stream)
                self.assertEqual(responses[-1].complete.finish_reason, "length")
                self.assertIsNone(server.process.poll(), server.log()[-2000:])
                self.assertTrue(health_serving(server.grpc_port))
            self.assertIn("SIGUSR1 received: ignored", server.log())
        finally:
            self.assertEqual(server.stop(), 0)

    def test_row5_sighup_and_sigquit_drain_like_sigterm(self):
        for sig in (signal.SIGHUP, signal.SIGQUIT):
            server = start_server()
            with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
                stub = pb_grpc.MoeserveStub(channel)
                stream = self.long_stream(stub, 600)
                first = next(stream)
                server.process.send_signal(sig)
                responses = [first] + list(stream)
                tokens = sum(len(r.chunk.token_ids) for r in responses if r.HasField("chunk"))
                self.assertEqual(responses[-1].complete.finish_reason, "length")
                self.assertEqual(tokens, 600)
            self.assertEqual(server.process.wait(60), 0, server.log()[-2000:])
            self.assertIn(f"received signal {int(sig)}: shutting down", server.log())


class StartupValidationTest(unittest.TestCase):
    """Rows 6, 7, 9 and 11: bad files and flags end startup at once with one clear line."""

    def run_server(self, *args, timeout=60):
        result = subprocess.run([ARGS.server, "--host", "127.0.0.1", "--port", "0",
                                 "--metrics-port", "0", "--http-port", "-1"] + list(args),
                                capture_output=True, text=True, timeout=timeout)
        return result.returncode, result.stdout + result.stderr

    def model_copy(self, name, replace=None):
        directory = tempfile.mkdtemp(prefix=f"moeserve_{name}_", dir=ARGS.workdir)
        for entry in os.listdir(model_dir()):
            if entry != replace:
                os.symlink(os.path.join(model_dir(), entry), os.path.join(directory, entry))
        return directory

    def test_row6_fifo_model_files_fail_at_once(self):
        for name in ("tokenizer.json", "config.json", "model-00001-of-00002.safetensors"):
            directory = self.model_copy("fifo", replace=name)
            os.mkfifo(os.path.join(directory, name))
            begin = time.monotonic()
            code, output = self.run_server("--model", directory, timeout=30)
            self.assertEqual(code, 1, output)
            self.assertIn(f"{name} is a FIFO; expected a regular file", output)
            self.assertLess(time.monotonic() - begin, 20)

    def test_row7_unbounded_flags_and_files_are_refused(self):
        code, output = self.run_server("--model", model_dir(), "--kv-cache-memory-bytes",
                                       "9223372036854775807")
        self.assertEqual(code, 1, output)
        self.assertIn("--kv-cache-memory-bytes must be in [1, 1125899906842624], got "
                      "9223372036854775807", output)
        code, output = self.run_server("--model", model_dir(), "--tls-cert", "/dev/zero",
                                       "--tls-key", "/dev/zero")
        self.assertEqual(code, 1, output)
        self.assertIn("--tls-cert: /dev/zero is a character device", output)
        big = os.path.join(tempfile.mkdtemp(dir=ARGS.workdir), "huge.pem")
        with open(big, "wb") as f:
            f.truncate(64 << 20)
        code, output = self.run_server("--model", model_dir(), "--tls-cert", big, "--tls-key", big)
        self.assertEqual(code, 1, output)
        self.assertIn(f"{big} is {64 << 20} bytes, more than the limit of 1048576", output)
        code, output = self.run_server("--model", model_dir(), "--stream-write-timeout", "nan")
        self.assertEqual(code, 1, output)

    def test_row9_eos_outside_the_vocabulary_is_refused(self):
        directory = self.model_copy("eos", replace="config.json")
        with open(os.path.join(model_dir(), "config.json")) as f:
            config = json.load(f)
        config["eos_token_id"] = 99999
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump(config, f)
        code, output = self.run_server("--model", directory)
        self.assertEqual(code, 1, output)
        self.assertIn(f"'eos_token_id' (99999) is outside the vocabulary (vocab_size "
                      f"{config['vocab_size']})", output)

    def test_row11_ports_in_use_fail_before_loading_with_one_line(self):
        with socket.socket() as busy:
            busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            result = subprocess.run(
                [ARGS.server, "--model", model_dir(), "--host", "127.0.0.1", "--port", str(port),
                 "--metrics-port", "0", "--http-port", "-1"], capture_output=True, text=True, timeout=60)
            ours = re.compile(r"^\d{4}-\d\d-\d\dT\S+ [DIWE] moeserve: ")
            foreign = [line for line in result.stderr.splitlines() if not ours.match(line)]
            errors = [line for line in result.stderr.splitlines() if " E moeserve: " in line]
            self.assertEqual(result.returncode, 1, result.stderr)
            self.assertEqual(foreign, [], "gRPC's own lines reached the user")
            self.assertEqual(len(errors), 1, result.stderr)
            self.assertIn(f"cannot listen for gRPC on 127.0.0.1:{port}", errors[0])
            result = subprocess.run(
                [ARGS.server, "--model", model_dir(), "--host", "127.0.0.1", "--port", "0",
                 "--metrics-port", str(port)], capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 1, result.stderr)
            self.assertIn("--metrics-port", result.stderr)
            self.assertNotIn("loading", result.stderr)


class ComposeTest(unittest.TestCase):
    """Row 13: the shipped compose file is safe as it stands."""

    def test_row13_compose_binds_loopback_needs_a_key_and_no_anonymous_admin(self):
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docker",
                            "compose.yaml")
        with open(path) as f:
            text = f.read()
        ports = [line.strip().strip("-").strip().strip('"') for line in text.splitlines()
                 if line.strip().startswith("- \"") and ":" in line and "/" not in line]
        published = [p for p in ports if p.count(":") >= 1 and p.split(":")[-1].isdigit()]
        self.assertTrue(published, text)
        for mapping in published:
            self.assertTrue(mapping.startswith("127.0.0.1:") or
                            mapping.startswith("${MOESERVE_BIND_ADDRESS:-127.0.0.1}:"),
                            f"{mapping} is published on every interface")
        self.assertNotIn("GF_AUTH_ANONYMOUS_ORG_ROLE=Admin", text)
        self.assertNotIn("GF_AUTH_ANONYMOUS_ENABLED=true", text)
        self.assertNotIn("GF_SECURITY_ADMIN_PASSWORD=admin", text)
        self.assertIn("MOESERVE_API_KEY", text)


def main():
    global ARGS, grpc, pb, pb_grpc, health_pb2, health_pb2_grpc
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--make-model", required=True)
    parser.add_argument("--stubs", required=True)
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    ARGS, rest = parser.parse_known_args()
    os.makedirs(ARGS.workdir, exist_ok=True)
    sys.path.insert(0, ARGS.stubs)
    import grpc as grpc_module
    from moeserve.v1 import moeserve_pb2, moeserve_pb2_grpc
    import health_pb2 as health, health_pb2_grpc as health_grpc
    grpc, pb, pb_grpc = grpc_module, moeserve_pb2, moeserve_pb2_grpc
    health_pb2, health_pb2_grpc = health, health_grpc
    shared.SERVED_MODEL_NAME = "hardening-test"
    program = unittest.main(argv=[sys.argv[0], "-v"] + rest, exit=False)
    sys.exit(0 if program.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
