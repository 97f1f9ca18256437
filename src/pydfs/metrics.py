"""Prometheus metrics: ``GET /metrics`` on every server, in the Prometheus text format.

Each app gets a registry of its own (``app[REGISTRY]``), never the process-wide default, so that
several apps in one process (tests, the web UI's embedded client) keep their figures apart.

What is measured, and where it comes from:

* every request, by both roles, in one outermost middleware (so it sees the status the error
  middleware answered with)::

      pydfs_requests_total{role, route, method, status}
      pydfs_request_seconds{role, route, method}        (histogram)

  ``route`` is the matched route's template (``/v1/blocks/{id}``), or ``unmatched``: never a raw
  path, whose ids would make a series per block.

* name node figures (``namenode.census``), read from its objects and its store at scrape time
  (nothing on its request path knows about Prometheus)::

      pydfs_namenode_files, pydfs_namenode_directories, pydfs_namenode_blocks  (kept by the store)
      pydfs_namenode_under_replicated_blocks, _over_replicated_blocks, _missing_blocks,
      pydfs_namenode_corrupt_blocks                         (as of the last replication scan)
      pydfs_namenode_datanodes{state="live"|"dead"}
      pydfs_namenode_datanodes_refusing_blocks             (their disk refused one lately)
      pydfs_namenode_replication_copies_total, pydfs_namenode_replication_bytes_total
      pydfs_namenode_uploads_in_flight
      pydfs_namenode_leader, pydfs_namenode_leader_epoch      (several name nodes: who leads)
      pydfs_namenode_leader_takeovers_total, pydfs_namenode_leader_refused_writes_total
      pydfs_namenode_metadata_up                            (the store answered the last renewal)
      pydfs_namenode_metadata_connections_lost_total        (a database failover shows as some)

* data node figures (``datanode.census``), likewise read at scrape time from plain counters
  that the block pipeline (``census.Traffic``), the scrubber and the copier bump once per
  block::

      pydfs_datanode_bytes_written_total, pydfs_datanode_blocks_received_total
      pydfs_datanode_bytes_read_total, pydfs_datanode_block_reads_total
      pydfs_datanode_checksum_failures_total{found="arrival"|"stored"}
      pydfs_datanode_blocks_verified_total
      pydfs_datanode_copies_sent_total, pydfs_datanode_copy_bytes_sent_total,
      pydfs_datanode_copies_failed_total
      pydfs_datanode_blocks, pydfs_datanode_disk_used_bytes, pydfs_datanode_disk_free_bytes

plus the usual ``process_*`` and ``python_info`` series.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["REGISTRY", "REQUESTS", "RequestMetrics", "counter", "gauge", "instrument"]

REGISTRY = web.AppKey("pydfs_metrics_registry", CollectorRegistry)
REFRESH: web.AppKey[Callable[[], Awaitable[None]]] = web.AppKey("pydfs_metrics_refresh")
REQUESTS: web.AppKey[RequestMetrics] = web.AppKey("pydfs_request_metrics")
METRICS_PATH = "/metrics"

# Request latencies run from a cached stat (well under a millisecond) to a whole block streamed
# through a pipeline (seconds).
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_UNMATCHED = "unmatched"
CLIENT_GONE = 499  # nginx's code for a request whose client went away before the answer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def instrument(
    app: web.Application,
    role: str,
    figures: Collector,
    refresh: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Count *app*'s requests and serve ``/metrics``, with the role's own *figures* (its
    ``census`` module's collector), after awaiting *refresh* if the collector must read them
    first."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    app[REGISTRY] = registry
    # Outermost, ahead of the error middleware: it must see the status errors were mapped to.
    requests = app[REQUESTS] = RequestMetrics(registry, role)
    app.middlewares.insert(0, requests.middleware)
    app.router.add_get(METRICS_PATH, _serve_metrics)
    registry.register(figures)
    if refresh is not None:
        app[REFRESH] = refresh


async def _serve_metrics(request: web.Request) -> web.Response:
    if (refresh := request.app.get(REFRESH)) is not None:
        await refresh()  # figures a collector must read from the store, which is async
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class RequestMetrics:
    """The request counter and latency histogram, with their labelled children bound once per
    (route, method[, status]) and then found by a dict lookup. A server that answers requests
    without aiohttp (``pydfs.fastpath``) records them here itself."""

    def __init__(self, registry: CollectorRegistry, role: str) -> None:
        self.role = role
        self.requests = Counter(
            "pydfs_requests",
            "HTTP requests answered, by route template, method and status.",
            ["role", "route", "method", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "pydfs_request_seconds",
            "Time from a request's arrival to the end of its answer, by route template and method.",
            ["role", "route", "method"],
            registry=registry,
            buckets=_BUCKETS,
        )
        self._counts: dict[tuple[str, str, int], Counter] = {}
        self._timers: dict[tuple[str, str], Histogram] = {}

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        count = self._counts.get((route, method, status))
        if count is None:
            count = self._counts[route, method, status] = self.requests.labels(
                self.role, route, method, str(status)
            )
        timer = self._timers.get((route, method))
        if timer is None:
            timer = self._timers[route, method] = self.seconds.labels(self.role, route, method)
        count.inc()
        timer.observe(seconds)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:  # what the error middleware lets through (redirects)
            status = exc.status
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            status = CLIENT_GONE
            raise
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else _UNMATCHED
            method = request.method if request.method in _METHODS else "other"
            self.record(route, method, status, time.perf_counter() - started)


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)
