"""The one way the apps hand work to the Celery workers: a message naming a task, with ids only.

Services name their tasks rather than import them: a tasks module imports its services, and services importing
their tasks back would make a loop. A message is sent once, without Celery's publish retries (with the broker down
they held every API request that queued work for 0.65 s in the Redis drill). A message not sent loses nothing: the
work it announced waits in the database, and a sweeper queues it again once its lease has passed.

A message sent while a request is served carries the request's id in a header (never in its arguments), and the
worker serves the task under it: the task's log lines and audit rows name the request that asked for the work, and
so do the messages the task sends in turn.
"""

from celery import current_app, signals
from django.db import InterfaceError, OperationalError

from core.request_id import current_request_id, is_safe, set_request_id

# The message header with the id of the request that queued the task (core.request_id).
REQUEST_ID_HEADER = "http_request_id"

# The retry policy of a task that meets a database restarting or failing over: it runs again shortly. What it had
# claimed comes back through its lease and the sweepers anyway; the retry only saves the wait.
RETRY_DATABASE_OUTAGES = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "max_retries": 5,
}


def send(task: str, *args) -> None:
    """Queue one run of the task named ``task`` (``"<app>.tasks.<name>"``) with ``args``."""
    request_id = current_request_id()
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    current_app.send_task(task, args=args, retry=False, headers=headers)


@signals.task_prerun.connect(dispatch_uid="core.queue.request_id")
def _serve_under_the_request_id(task=None, **kwargs) -> None:
    # A task run eagerly runs in its caller's context, under the caller's id already.
    if task is None or task.request.is_eager:
        return
    request_id = getattr(task.request, REQUEST_ID_HEADER, None)
    # Checked again: any client of the broker can put a message in the queue.
    set_request_id(request_id if isinstance(request_id, str) and is_safe(request_id) else None)


@signals.task_postrun.connect(dispatch_uid="core.queue.request_id_end")
def _forget_the_request_id(task=None, **kwargs) -> None:
    if task is None or task.request.is_eager:
        return
    set_request_id(None)
