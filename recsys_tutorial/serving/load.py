"""A bounded, open-loop load test on loopback: requests at a fixed rate, latencies in milliseconds.

Open loop means request ``i`` is due at ``t0 + i / rate`` whatever happened to earlier ones (as real
users arrive), so a slow server cannot slow the load down and hide its own queueing. Latency is
measured from the due time, which counts any wait for a free client thread as latency too. Bounded:
at most ``max_requests`` requests and ``duration_s`` seconds, to 127.0.0.1 only.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import numpy as np

__all__ = ["LoadResult", "load_test"]


@dataclass(frozen=True)
class LoadResult:
    """Latencies (ms, from each request's due time) and outcomes of one load test."""

    latency_ms: np.ndarray  # (n_requests,)
    status: np.ndarray  # (n_requests,) HTTP status, 0 for a transport error
    rate: float  # requests per second asked for
    seconds: float  # wall time from the first due time to the last answer

    @property
    def errors(self) -> int:
        """Requests that failed or did not answer 200."""
        return int((self.status != 200).sum())

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latency_ms, q))

    def summary(self) -> dict[str, float]:
        return {
            "requests": len(self.latency_ms), "errors": self.errors, "rate": self.rate,
            "achieved_rate": len(self.latency_ms) / self.seconds, "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99), "max_ms": float(self.latency_ms.max()),
        }  # fmt: skip


def load_test(
    base_url: str, paths: Sequence[str], rate: float = 200.0, duration_s: float = 3.0, max_requests: int = 1000,
    n_threads: int = 8, timeout_s: float = 5.0,
) -> LoadResult:  # fmt: skip
    """Send ``min(rate * duration_s, max_requests)`` GETs cycling through ``paths`` at ``rate`` per second."""
    if urlsplit(base_url).hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise ValueError(f"load tests run on loopback only, got {base_url!r}")
    if rate <= 0 or duration_s <= 0 or max_requests < 1:
        raise ValueError("rate, duration_s and max_requests must be positive")
    n = min(int(rate * duration_s), max_requests)
    latency, status = np.zeros(n), np.zeros(n, dtype=np.int64)
    counter, urls = itertools.count(), list(itertools.islice(itertools.cycle(paths), n))
    # Clients made and connected before the clock starts: their set-up is not the server's latency.
    clients = [httpx.Client(base_url=base_url, timeout=timeout_s) for _ in range(n_threads)]
    for client in clients:
        client.get(paths[0])  # opens the keep-alive connection (and warms the server)
    lock, t0 = threading.Lock(), time.perf_counter() + 0.05  # a moment for the threads to start

    def worker(client: httpx.Client) -> None:
        while True:
            with lock:
                i = next(counter)
            if i >= n:
                return
            due = t0 + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            try:
                status[i] = client.get(urls[i]).status_code
            except httpx.HTTPError:
                status[i] = 0
            latency[i] = (time.perf_counter() - due) * 1000

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    for client in clients:
        client.close()
    return LoadResult(latency, status, rate, seconds)
