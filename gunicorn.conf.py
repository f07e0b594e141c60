"""gunicorn's settings for the API servers, read from the folder gunicorn starts in (the project's: the README's
command and the benchmarks start it there; from elsewhere, pass ``-c <project>/gunicorn.conf.py``).

gunicorn logs through loggers of its own, ``gunicorn.error`` (start, workers, refused requests, which quote the request
line) and ``gunicorn.access`` (one line per request, with its URL), whose handlers would write past the application's
redaction. Here they have none: their records go to the root logger's handler, which redacts anything that looks like
a card number and writes the application's structured lines. That is this file's handler in the master process, and
the application's own (config/settings/base.py's LOGGING) in each worker once Django is set up. With a logging
configuration gunicorn also writes its access log, to the same stream (stderr); ``--log-level`` still sets
``gunicorn.error``'s level. Each access line ends with the answer's ``X-Request-Id`` (core/request_id.py).

With ``PROMETHEUS_MULTIPROC_DIR`` set, every worker counts in that folder and /metrics adds it up (core/metrics.py):
the master removes the files of processes no longer running as it starts, and drops a worker's live gauges when it
exits (its counters stay counted).
"""

import os

from prometheus_client import multiprocess

from core.metrics import metric_files_remove, pids_not_running

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_pan": {"()": "core.logging.RedactCardNumbersFilter"}},
    "formatters": {"structured": {"()": "core.logging.StructuredFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "structured", "filters": ["redact_pan"]},
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "gunicorn.error": {"handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": [], "propagate": True},
    },
}

access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({x-request-id}o)s'


def on_starting(server):
    """An earlier start's counts go (a Celery worker sharing the folder keeps its own)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        metric_files_remove(directory, pids=pids_not_running(directory))


def child_exit(server, worker):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        multiprocess.mark_process_dead(worker.pid, directory)
