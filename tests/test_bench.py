"""`labctl bench` against an Ollama TEST DOUBLE: a local HTTP server on 127.0.0.1 (started by the
test) that speaks the subset of Ollama's API bench uses — /api/version, /api/tags and streaming
/api/generate — with deterministic counters and delays, so the report's arithmetic can be checked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from labctl.bench import BenchError, Sample, percentile, run_bench, summarize
from labctl.cli import cli

FIRST_TOKEN_DELAY = 0.05
REST_DELAY = 0.03
EVAL_DURATION_NS = 500_000_000  # every answer "took" 0.5 s of decoding by Ollama's clock


class OllamaTestDouble(ThreadingHTTPServer):
    """TEST DOUBLE of an Ollama server. Request number n (1, 2, ...) reports eval_count = 10 n."""

    daemon_threads = True

    def __init__(self, models: tuple[str, ...] = ("tiny:1b",), fail_requests: tuple[int, ...] = ()) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.models = models
        self.fail_requests = set(fail_requests)
        self.lock = threading.Lock()
        self.generate_count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict] = []
        # A failure shape for every request: "http500", "junk", "list-chunk", "hang", "negative",
        # "tags-shape", "tags-500"; "" answers like Ollama.
        self.shape = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: OllamaTestDouble

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/api/version":
            self._json(200, {"version": "0.40.1-test-double"})
        elif self.path == "/api/tags" and self.server.shape == "tags-shape":
            self._json(200, {"models": "tiny:1b"})
        elif self.path == "/api/tags" and self.server.shape == "tags-500":
            self._json(500, {"error": "internal"})
        elif self.path == "/api/tags":
            self._json(200, {"models": [{"name": m, "model": m} for m in self.server.models]})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/api/generate":
            self._json(404, {"error": "not found"})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv = self.server
        if srv.shape == "http500":
            self._json(500, {"error": "llama runner process has terminated"})
            return
        if body.get("model") not in srv.models:
            self._json(404, {"error": f"model '{body.get('model')}' not found"})
            return
        with srv.lock:
            srv.generate_count += 1
            n = srv.generate_count
            srv.bodies.append(body)
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            # HTTP/1.0 without Content-Length: the stream ends when the connection closes, like NDJSON.
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            time.sleep(FIRST_TOKEN_DELAY)
            if srv.shape in ("junk", "list-chunk"):
                self.wfile.write(b"<html>proxy error</html>\n" if srv.shape == "junk" else b"[1, 2]\n")
                return
            if n in srv.fail_requests:
                self.wfile.write(json.dumps({"error": f"test double failure on request {n}"}).encode() + b"\n")
                return
            self.wfile.write(json.dumps({"model": body["model"], "response": "Hello", "done": False}).encode() + b"\n")
            self.wfile.flush()
            time.sleep(REST_DELAY if srv.shape != "hang" else 3.0)
            final = {
                "model": body["model"],
                "response": "",
                "done": True,
                "done_reason": "stop",
                "eval_count": 10 * n if srv.shape != "negative" else -5,
                "eval_duration": EVAL_DURATION_NS,
                "prompt_eval_count": 5,
                "prompt_eval_duration": 1_000_000,
                "total_duration": EVAL_DURATION_NS + 1_000_000,
            }
            self.wfile.write(json.dumps(final).encode() + b"\n")
        finally:
            with srv.lock:
                srv.in_flight -= 1


@pytest.fixture
def ollama_double() -> Iterator[OllamaTestDouble]:
    server = OllamaTestDouble()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# ---- pure arithmetic ----------------------------------------------------------------------------------
def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == pytest.approx(2.5)
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)  # rank 2.85
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0 and percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0


def test_summarize_by_hand() -> None:
    samples = [
        Sample(True, 1.0, ttft_s=0.1, eval_count=10, eval_duration_ns=500_000_000),  # 20 tok/s
        Sample(True, 2.0, ttft_s=0.2, eval_count=30, eval_duration_ns=1_000_000_000),  # 30 tok/s
        Sample(True, 3.0, ttft_s=0.3, eval_count=40, eval_duration_ns=1_000_000_000),  # 40 tok/s
        Sample(False, 9.0, error="boom"),
    ]
    lv = summarize(2, samples, wall_s=4.0)
    assert (lv.requests, lv.ok, lv.errors, lv.first_error) == (4, 3, 1, "boom")
    assert lv.requests_per_s == pytest.approx(0.75)
    assert lv.latency_p50_s == pytest.approx(2.0)
    assert lv.latency_p95_s == pytest.approx(2.9)  # failed request's 9 s is not a latency
    assert lv.ttft_p50_s == pytest.approx(0.2)
    assert lv.tokens_per_s_per_request == pytest.approx(30.0)
    assert lv.tokens_total == 80 and lv.tokens_per_s_total == pytest.approx(20.0)


# ---- against the test double ---------------------------------------------------------------------------
def test_sweep_against_the_double(ollama_double: OllamaTestDouble) -> None:
    report = run_bench(ollama_double.url, "tiny:1b", concurrency=(1, 2, 4), rounds=2, num_predict=16, warmup=False)
    assert [lv.concurrency for lv in report.levels] == [1, 2, 4]
    assert [lv.requests for lv in report.levels] == [2, 4, 8]
    assert all(lv.ok == lv.requests and lv.errors == 0 for lv in report.levels)
    # Request n reports 10 n tokens in 0.5 s → 20 n tok/s. Levels run in order: n = 1–2, 3–6, 7–14.
    expected = [(1, 2), (3, 6), (7, 14)]
    for lv, (lo, hi) in zip(report.levels, expected, strict=True):
        ns = range(lo, hi + 1)
        assert lv.tokens_total == sum(10 * n for n in ns)
        assert lv.tokens_per_s_per_request == pytest.approx(sum(20 * n for n in ns) / len(ns))
        assert lv.tokens_per_s_total == pytest.approx(lv.tokens_total / lv.wall_s)
        assert lv.requests_per_s == pytest.approx(lv.ok / lv.wall_s)
        # Client-side timings include the double's fixed delays.
        assert FIRST_TOKEN_DELAY <= lv.ttft_p50_s < lv.latency_p50_s
        assert lv.latency_p50_s >= FIRST_TOKEN_DELAY + REST_DELAY
        assert lv.latency_p50_s <= lv.latency_p95_s
        # Two sequential rounds per worker: the level cannot finish faster than that.
        assert lv.wall_s >= 2 * (FIRST_TOKEN_DELAY + REST_DELAY)
    assert ollama_double.max_in_flight == 4, "concurrency 4 must really have 4 requests in flight"
    body = ollama_double.bodies[0]
    assert body == {"model": "tiny:1b", "prompt": report.prompt, "stream": True, "options": {"num_predict": 16}}


def test_warmup_request_is_not_counted(ollama_double: OllamaTestDouble) -> None:
    report = run_bench(ollama_double.url, "tiny:1b", concurrency=(1,), rounds=1, warmup=True)
    assert ollama_double.generate_count == 2
    assert report.levels[0].tokens_total == 20  # request 2, not the warm-up's 10


def test_failed_requests_are_counted_not_averaged(ollama_double: OllamaTestDouble) -> None:
    ollama_double.fail_requests = {2}
    report = run_bench(ollama_double.url, "tiny:1b", concurrency=(1,), rounds=3, warmup=False)
    lv = report.levels[0]
    assert (lv.ok, lv.errors) == (2, 1)
    assert "test double failure on request 2" in lv.first_error
    assert lv.tokens_total == 10 + 30
    assert lv.tokens_per_s_per_request == pytest.approx((20 + 60) / 2)


def test_missing_model_is_a_one_line_error(ollama_double: OllamaTestDouble) -> None:
    with pytest.raises(BenchError, match="not on the server"):
        run_bench(ollama_double.url, "llama3.2:1b", concurrency=(1,), warmup=False)
    assert ollama_double.generate_count == 0


def test_unreachable_server() -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BenchError, match="cannot reach Ollama"):
        run_bench(f"http://127.0.0.1:{port}", "tiny:1b", concurrency=(1,), warmup=False)


def test_cli_json_and_table(ollama_double: OllamaTestDouble) -> None:
    runner = CliRunner()
    args = ["bench", "--url", ollama_double.url, "--model", "tiny:1b", "--concurrency", "1,2", "--rounds", "1"]
    result = runner.invoke(cli, [*args, "--output", "json", "--no-warmup"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [lv["concurrency"] for lv in data["levels"]] == [1, 2]
    assert data["levels"][0]["tokens_total"] == 10 and data["levels"][1]["tokens_total"] == 50
    table = runner.invoke(cli, [*args, "--no-warmup"])
    assert table.exit_code == 0, table.output
    for header in ("concurrency", "req/s", "p50", "p95", "TTFT", "tok/s"):
        assert header in table.output
    bad = runner.invoke(cli, [*args[:-4], "--concurrency", "1,x"])
    assert bad.exit_code == 2 and "1,2,4,8" in bad.output
    missing = runner.invoke(cli, ["bench", "--url", ollama_double.url, "--model", "nope:1b"])
    assert missing.exit_code == 1 and missing.output.count("error: ") == 1


# ---- strict: every failure shape gives a clean error and a non-zero exit -----------------------------
@pytest.mark.parametrize(
    ("shape", "first_error"),
    [
        ("http500", "HTTP 500: "),
        ("junk", "JSONDecodeError"),
        ("list-chunk", "not an Ollama chunk"),
        ("hang", "ReadTimeout"),
        ("negative", "nonsense counter in the done chunk: eval_count=-5"),
    ],
)
def test_any_failed_request_exits_1_with_the_count_and_first_error(
    ollama_double: OllamaTestDouble, shape: str, first_error: str
) -> None:
    ollama_double.shape = shape
    args = ["bench", "--url", ollama_double.url, "--model", "tiny:1b", "--concurrency", "1,2", "--rounds", "1"]
    result = CliRunner().invoke(cli, [*args, "--no-warmup", "--timeout", "0.5"], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: 3 of 3 requests failed")
    assert first_error in errors[0]
    assert "failed" in result.stdout  # the table's column of failures
    table_rows = [line for line in result.stdout.splitlines() if "0/1" in line or "0/2" in line]
    assert len(table_rows) == 2


@pytest.mark.parametrize(("shape", "message"), [("tags-shape", "without a list of models"), ("tags-500", "HTTP 500")])
def test_unexpected_tags_answer_is_a_clean_error(ollama_double: OllamaTestDouble, shape: str, message: str) -> None:
    ollama_double.shape = shape
    result = CliRunner().invoke(cli, ["bench", "--url", ollama_double.url, "--model", "tiny:1b", "--no-warmup"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.count("error: ") == 1 and message in result.output


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_nonsense_timeout_is_refused_as_invalid_input(ollama_double: OllamaTestDouble, value: str) -> None:
    result = CliRunner().invoke(cli, ["bench", "--url", ollama_double.url, "--model", "tiny:1b", "--timeout", value])
    assert result.exit_code == 2 and "--timeout" in result.output
    assert ollama_double.generate_count == 0
    with pytest.raises(BenchError, match="--timeout"):
        run_bench(ollama_double.url, "tiny:1b", timeout=float(value), warmup=False)


def test_bench_ignores_proxy_variables(ollama_double: OllamaTestDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy that does not exist: if bench used it, every request would fail.
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    report = run_bench(ollama_double.url, "tiny:1b", concurrency=(1,), rounds=1, warmup=False)
    assert report.levels[0].ok == 1 and not report.failure()
