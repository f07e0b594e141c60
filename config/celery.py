import os

from celery import Celery, signals

# Production unless told otherwise: make run and make test choose their own settings.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def keep_djangos_logging(**kwargs):
    """Django's LOGGING (config/settings/base.py) is the whole logging of a worker: with a receiver here Celery
    configures none of its own, so no logger of its (``celery.task`` had an unredacted handler of its own, and did
    not propagate) writes past the redaction of card numbers."""


@signals.worker_init.connect
def check_the_kek(**kwargs):
    """A worker whose KEK provider cannot serve (a wrong HSM PIN, a missing module, token or key; a malformed
    VAULT_KEK) stops as it starts, with the one line saying what to do (vault/apps.py). SystemExit, as Celery logs
    and ignores what else a signal's receiver raises."""
    import django
    from django.core.exceptions import ImproperlyConfigured

    django.setup()
    from vault.kek import kek_provider

    try:
        kek_provider().verify()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"celery worker: {exc}") from None


@signals.task_prerun.connect
@signals.task_postrun.connect
def close_unusable_database_connections(task=None, **kwargs):
    """What Django does around every request, around every task: a connection that broke (a database restart, a
    failover) or outlived DATABASE_CONN_MAX_AGE is closed, and the next query opens a new one after a health check.
    Celery's own fixup keeps connections for CELERY_DB_REUSE_MAX tasks without looking at them, so a worker that
    lived through a database restart failed every task on a dead connection. (Not for a task run eagerly, inside
    its caller's transaction: the connection is the caller's.)"""
    from django.db import close_old_connections

    if task is not None and task.request.is_eager:
        return
    close_old_connections()


@signals.worker_ready.connect
def count_this_worker(**kwargs):
    """``tokenvault_celery_worker_processes`` counts this worker (1) while it runs, for the worker-missing alert: set
    in the worker's main process once it takes tasks, whatever its pool (core/metrics.py)."""
    from django.conf import settings

    if settings.METRICS_ENABLED:
        from core.metrics import CELERY_WORKER_PROCESSES

        CELERY_WORKER_PROCESSES.set(1)


@signals.worker_shutdown.connect
def uncount_this_worker(**kwargs):
    """A worker that stops leaves the count at once; its counters stay counted (core/metrics.py). One killed without a
    word leaves it at the next scrape."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
