"""`labctl bench`: the seed's `hey` load test, built in and aware of what an LLM server does.

A concurrency sweep (default 1, 2, 4, 8): at each level, that many workers each send ``rounds``
streaming ``POST /api/generate`` requests back to back. Per level it reports:

- requests/s: successful requests ÷ wall time of the level;
- latency p50/p95: send → last byte, linear interpolation between ranks (numpy's default method);
- time to first token (p50/p95): send → first chunk carrying generated text;
- tokens/s: Ollama's own counters from the final chunk, eval_count ÷ (eval_duration / 1e9), averaged
  over requests (the decode speed one user sees) — and total eval_count ÷ wall time (what the
  server delivers to everyone at once).

Talks to Ollama only through the URL it is given (a port-forward, or the Service from inside the
cluster); it never guesses an address.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from labctl.errors import ExitCode, LabctlError

DEFAULT_CONCURRENCY = (1, 2, 4, 8)
DEFAULT_PROMPT = "Explain in two sentences why the sky is blue."


class BenchError(LabctlError):
    exit_code = ExitCode.FAILED


class BenchInputError(BenchError):
    """A flag makes no sense (a timeout of -1 s, no concurrency levels): nothing was sent."""

    exit_code = ExitCode.INVALID_INPUT


class BenchFailed(BenchError):
    """The sweep ran but some requests failed: the numbers describe a server that did not answer."""


@dataclass(frozen=True)
class Sample:
    """One request as the client saw it, plus Ollama's counters from its final chunk."""

    ok: bool
    latency_s: float
    ttft_s: float | None = None
    eval_count: int = 0
    eval_duration_ns: int = 0
    error: str = ""


@dataclass(frozen=True)
class LevelReport:
    concurrency: int
    requests: int
    ok: int
    errors: int
    wall_s: float
    requests_per_s: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    tokens_per_s_per_request: float | None
    tokens_total: int
    tokens_per_s_total: float | None
    first_error: str = ""


@dataclass
class BenchReport:
    url: str
    model: str
    prompt: str
    num_predict: int
    rounds: int
    levels: list[LevelReport] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def failure(self) -> str:
        """'' when every request succeeded, else one line: how many failed and the first error."""
        failed = sum(lv.errors for lv in self.levels)
        if not failed:
            return ""
        first = next(lv for lv in self.levels if lv.errors)
        total = sum(lv.requests for lv in self.levels)
        return (
            f"{failed} of {total} requests failed; first error (concurrency {first.concurrency}): {first.first_error} — "
            "the figures above count only the requests that succeeded"
        )


def percentile(values: list[float], q: float) -> float | None:
    """q in [0, 100]; linear interpolation between the two nearest ranks. None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(concurrency: int, samples: list[Sample], wall_s: float) -> LevelReport:
    good = [s for s in samples if s.ok]
    latencies = [s.latency_s for s in good]
    ttfts = [s.ttft_s for s in good if s.ttft_s is not None]
    rates = [s.eval_count / (s.eval_duration_ns / 1e9) for s in good if s.eval_duration_ns > 0]
    tokens = sum(s.eval_count for s in good)
    errors = [s.error for s in samples if not s.ok]
    return LevelReport(
        concurrency=concurrency,
        requests=len(samples),
        ok=len(good),
        errors=len(errors),
        wall_s=wall_s,
        requests_per_s=len(good) / wall_s if wall_s > 0 else 0.0,
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p95_s=percentile(ttfts, 95),
        tokens_per_s_per_request=sum(rates) / len(rates) if rates else None,
        tokens_total=tokens,
        tokens_per_s_total=tokens / wall_s if wall_s > 0 and good else None,
        first_error=errors[0] if errors else "",
    )


async def _generate(client: Any, url: str, body: dict[str, Any]) -> Sample:
    import httpx

    start = time.perf_counter()
    ttft: float | None = None
    final: dict[str, Any] | None = None
    try:
        async with client.stream("POST", f"{url}/api/generate", json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace").strip()
                return Sample(False, time.perf_counter() - start, error=f"HTTP {response.status_code}: {text[:200]}")
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                chunk = json.loads(line)
                if not isinstance(chunk, dict):
                    return Sample(False, time.perf_counter() - start, error=f"not an Ollama chunk: {line[:120]!r}")
                if "error" in chunk:
                    return Sample(False, time.perf_counter() - start, error=str(chunk["error"])[:200])
                if ttft is None and chunk.get("response"):
                    ttft = time.perf_counter() - start
                if chunk.get("done"):
                    final = chunk
    except (httpx.HTTPError, json.JSONDecodeError) as err:
        return Sample(False, time.perf_counter() - start, error=f"{type(err).__name__}: {err}"[:200])
    latency = time.perf_counter() - start
    if final is None:
        return Sample(False, latency, error="stream ended without a done chunk")
    counters = {}
    for key in ("eval_count", "eval_duration"):
        value = final.get(key, 0)
        # bool is an int in Python; a count of True tokens is as much nonsense as -5.
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return Sample(False, latency, error=f"nonsense counter in the done chunk: {key}={value!r}")
        counters[key] = value
    return Sample(True, latency, ttft_s=ttft, eval_count=counters["eval_count"], eval_duration_ns=counters["eval_duration"])


async def _level(url: str, body: dict[str, Any], concurrency: int, rounds: int, timeout: float) -> LevelReport:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    # trust_env=False: the URL is a lab address or a port-forward; a campus http_proxy must not see it.
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        samples: list[Sample] = []

        async def worker() -> None:
            for _ in range(rounds):
                samples.append(await _generate(client, url, body))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return summarize(concurrency, samples, wall)


def _check_server(url: str, model: str, timeout: float) -> None:
    import httpx

    hint = "start a port-forward (kubectl -n llm port-forward svc/ollama 11434) or pass --url"
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            client.get(f"{url}/api/version").raise_for_status()
            tags = client.get(f"{url}/api/tags").raise_for_status().json()
    except httpx.HTTPStatusError as err:
        raise BenchError(
            f"--url: {err.request.url} answered HTTP {err.response.status_code} — is this an Ollama server? ({hint})"
        ) from None
    except httpx.HTTPError as err:
        raise BenchError(f"--url: cannot reach Ollama at {url} ({type(err).__name__}: {err}) — {hint}") from None
    except ValueError:
        raise BenchError(f"--url: {url}/api/tags did not return JSON — is this an Ollama server?") from None
    models = tags.get("models") if isinstance(tags, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) and isinstance(m.get("name", ""), str) for m in models):
        raise BenchError(
            f"--url: {url}/api/tags answered JSON without a list of models ({json.dumps(tags)[:120]}) — "
            "is this an Ollama server?"
        )
    names = [m.get("name", "") for m in models]
    wanted = model if ":" in model else f"{model}:latest"
    if wanted not in names and model not in names:
        have = ", ".join(names) or "none"
        raise BenchError(f"--model: {model} is not on the server at {url} (it has: {have}) — pull it or pass --model")


def run_bench(
    url: str,
    model: str,
    *,
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY,
    rounds: int = 2,
    prompt: str = DEFAULT_PROMPT,
    num_predict: int = 64,
    timeout: float = 300.0,
    warmup: bool = True,
    progress: Any = None,
) -> BenchReport:
    """Check the server, optionally warm the model up (not counted), then sweep the levels."""
    url = url.rstrip("/")
    if not concurrency or any(c < 1 for c in concurrency):
        raise BenchInputError("--concurrency: give positive integers, e.g. 1,2,4,8")
    if rounds < 1:
        raise BenchInputError("--rounds: must be at least 1")
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise BenchInputError(f"--timeout: {timeout!r} seconds — give a positive number, e.g. 300")
    _check_server(url, model, timeout=min(timeout, 10.0))
    body = {"model": model, "prompt": prompt, "stream": True, "options": {"num_predict": num_predict}}
    report = BenchReport(url=url, model=model, prompt=prompt, num_predict=num_predict, rounds=rounds)
    if warmup:
        # The first request loads the model into memory; that is not the latency being measured.
        asyncio.run(_level(url, body, 1, 1, timeout))
    for level in concurrency:
        if progress is not None:
            progress(f"concurrency {level}: {level * rounds} requests")
        report.levels.append(asyncio.run(_level(url, body, level, rounds, timeout)))
    return report


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "—" if value is None else f"{value * scale:.{digits}f}"


def report_table(report: BenchReport) -> Any:
    from rich.table import Table

    table = Table(title=f"Ollama {report.model} at {report.url} — {report.rounds} requests per worker, "
                  f"num_predict {report.num_predict}")
    for header in ("concurrency", "ok/requests", "failed", "req/s", "latency p50 s", "latency p95 s", "TTFT p50 s",
                   "TTFT p95 s", "tok/s per request", "tok/s total"):
        table.add_column(header, justify="right")
    for lv in report.levels:
        table.add_row(
            str(lv.concurrency),
            f"{lv.ok}/{lv.requests}",
            str(lv.errors),
            _fmt(lv.requests_per_s),
            _fmt(lv.latency_p50_s),
            _fmt(lv.latency_p95_s),
            _fmt(lv.ttft_p50_s),
            _fmt(lv.ttft_p95_s),
            _fmt(lv.tokens_per_s_per_request, digits=1),
            _fmt(lv.tokens_per_s_total, digits=1),
        )
    return table
