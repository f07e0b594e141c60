"""The one way the apps hand work to the Celery workers: a message naming a task, with ids only.

Services name their tasks rather than import them: a tasks module imports its services, and services importing
their tasks back would make a loop. A message is sent once, without Celery's publish retries (with the broker down
they held every API request that queued work for 0.65 s in the Redis drill). A message not sent loses nothing: the
work it announced waits in the database, and a sweeper queues it again once its lease has passed.
"""

from celery import current_app
from django.db import InterfaceError, OperationalError

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
    current_app.send_task(task, args=args, retry=False)
