"""Prometheus metrics: the factories every app's ``metrics`` module defines its counters and histograms with, the
API's request counter, and where a scrape finds what every process of this host counted.

**Many processes, one scrape.** gunicorn serves with several worker processes and Celery runs its own, and a scrape
of /metrics reaches one gunicorn worker only. With ``PROMETHEUS_MULTIPROC_DIR`` in the environment of every one of
them (prometheus-client reads it when it is imported), each process writes its counts to files of its own there,
named after its pid, and /metrics adds up every file (``process_metrics``). The folder belongs to one host's
processes, which must all see the same pids (one container, or one machine): the files of a process that ended are
found by its pid. They are

- emptied at start: ``make run`` (scripts/run.sh) empties the folder before it starts anything; gunicorn's master
  (gunicorn.conf.py's ``on_starting``) removes the files of every process no longer running, so it does not take
  the counts of a Celery worker sharing the folder and running on;
- kept when a process ends: a dead worker's counters and histograms stay counted (the sums never go down); only its
  "live" gauges go, when gunicorn's master sees a worker exit (``child_exit``), when a Celery worker stops, and at
  each scrape for any process killed without a word (``process_metrics``).

Without the variable, a process counts in memory (prometheus-client's default registry) and /metrics shows its own
counts: one process (runserver, the tests), or a figure per gunicorn worker that a scrape samples at random.

**METRICS_ENABLED** false (the benchmark's "without" side): the factories make metrics that count nothing, the
request middleware takes itself out of the chain, and /metrics answers like an unknown path. The factories read it
when an app's ``metrics`` module is imported: a process decides once, as it decides its settings.
"""

import contextlib
import glob
import os
import time
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, multiprocess

# The folder may not be there yet for the first process of the host to start (a Celery worker before gunicorn): the
# metrics below write their files in it as soon as they are made.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

# Seconds; from a cache hit to a TSP or webhook endpoint at its timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Uncounted:
    """A metric that counts nothing (METRICS_ENABLED false), with the methods the apps call on theirs."""

    def labels(self, *args, **kwargs) -> "Uncounted":
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter | Uncounted:
    """A counter named ``tokenvault_<name>_total`` (prometheus-client adds ``_total``)."""
    if not settings.METRICS_ENABLED:
        return Uncounted()
    return Counter(f"tokenvault_{name}", documentation, labelnames)


def histogram(
    name: str, documentation: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
) -> Histogram | Uncounted:
    """A histogram named ``tokenvault_<name>`` (``_bucket``, ``_sum``, ``_count``)."""
    if not settings.METRICS_ENABLED:
        return Uncounted()
    return Histogram(f"tokenvault_{name}", documentation, labelnames, buckets=buckets)


# ------------------------------------------------------------------------------------------------------------
# Where a scrape reads the counts
# ------------------------------------------------------------------------------------------------------------
def process_metrics():
    """What this host's processes counted: every file of ``PROMETHEUS_MULTIPROC_DIR`` added up, the live gauges of
    the processes found dead first dropped; or, without the folder, this process's own counts."""
    if not settings.PROMETHEUS_MULTIPROC_DIR:
        return REGISTRY
    for pid in pids_not_running(settings.PROMETHEUS_MULTIPROC_DIR, pattern="gauge_live*.db"):
        # Two scrapes at once (two gunicorn workers) may both find the same dead process.
        with contextlib.suppress(FileNotFoundError):
            multiprocess.mark_process_dead(pid, settings.PROMETHEUS_MULTIPROC_DIR)
    return multiprocess.MultiProcessCollector(None, path=settings.PROMETHEUS_MULTIPROC_DIR)


def pids_not_running(directory: str, *, pattern: str = "*.db") -> set[int]:
    """The pids named by the metric files of ``directory`` (``<kind>_<pid>.db``) that no running process has."""
    pids = set()
    for path in glob.glob(os.path.join(directory, pattern)):
        pid = os.path.basename(path).removesuffix(".db").rpartition("_")[2]
        if pid.isdigit() and not _running(int(pid)):
            pids.add(int(pid))
    return pids


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal sent: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def metric_files_remove(directory: str, *, pids: Iterable[int]) -> None:
    """Remove every metric file of ``pids`` from ``directory``: the counts of processes of an earlier start."""
    for pid in pids:
        for path in glob.glob(os.path.join(directory, f"*_{pid}.db")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


# ------------------------------------------------------------------------------------------------------------
# The API's requests
# ------------------------------------------------------------------------------------------------------------
# Made with prometheus-client's classes rather than the factories: gunicorn's master imports this module for the
# folder's upkeep (gunicorn.conf.py) before any settings exist. The middleware and config/celery.py read
# METRICS_ENABLED themselves.
HTTP_REQUESTS = Counter(
    "tokenvault_http_requests",
    "HTTP requests answered, by route (the URL pattern matched; unmatched for an unknown path, static for the "
    "admin's static files), method and status class (2xx...).",
    ["route", "method", "status_class"],
)
HTTP_REQUEST_DURATION = Histogram(
    "tokenvault_http_request_duration_seconds",
    "Time from the request reaching the application to its answer, by route and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
# Any other method (a client may send any word) is counted as "other": a label value never comes from the request.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# The Celery workers running: each sets 1 when it is ready (config/celery.py), and its share goes when it stops or
# is found dead. The worker-missing alert fires on 0.
CELERY_WORKER_PROCESSES = Gauge(
    "tokenvault_celery_worker_processes",
    "Celery workers running on this host (one per `celery worker`, whatever its pool).",
    multiprocess_mode="livesum",
)


class RequestMetricsMiddleware:
    """Counts every answer and its time, by route: the pattern Django matched
    (``tokens/<token_reference:reference>``), never the path itself, which holds token ids and anything a client
    types."""

    def __init__(self, get_response):
        if not settings.METRICS_ENABLED:
            raise MiddlewareNotUsed  # out of the chain: not even the clock is read
        from core.api import EndpointNotFoundView  # its catch-all pattern is not a route worth a series of its own

        self.get_response = get_response
        self.not_found_view = EndpointNotFoundView
        self.static_prefix = f"/{settings.STATIC_URL.lstrip('/')}"

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        route = self.route_of(request)
        method = request.method if request.method in METHODS else "other"
        HTTP_REQUESTS.labels(route, method, f"{response.status_code // 100}xx").inc()
        HTTP_REQUEST_DURATION.labels(route, method).observe(elapsed)
        return response

    def route_of(self, request) -> str:
        match = request.resolver_match
        if match is None:
            # Answered before the URL was resolved (WhiteNoise's static files, a redirect to HTTPS) or resolved to
            # nothing (a 404 under admin/).
            return "static" if request.path.startswith(self.static_prefix) else "unmatched"
        if getattr(match.func, "view_class", None) is self.not_found_view:
            return "unmatched"
        return match.route
