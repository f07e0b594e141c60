"""Structured log lines with anything that looks like a card number redacted.

The redaction runs on the fully rendered record (message, arguments and traceback), so a card number cannot slip
into the logs through an exception message or a formatted argument, whichever library wrote the record.

It is a filter of the one handler every record goes to, the root logger's, rather than of loggers: a logger's filter
sees only the records logged to it by name, not those of its children. So no logger keeps a handler of its own
(Django's runserver access lines and debug console: config/settings/base.py's LOGGING; gunicorn's access and error
lines: gunicorn.conf.py), and a test holds every handler of every logger to it (tests/project/test_log_redaction.py).
"""

import json
import logging
import re
from contextvars import ContextVar

# A run of 12 or more digits (a longer one may hide a card number inside it), or 12 to 19 digits grouped by single
# spaces or dashes; never the fraction of a decimal number (a task's 0.0123456789012345 s is no card number).
PAN_LIKE = re.compile(r"(?<![\d.])(?:\d{12,}|(?:\d[ -]?){11,18}\d(?!\d))")


# The id of the request being served (``core.request_id`` sets it, and a Celery worker for the task a request queued),
# which every structured line written meanwhile carries. Here rather than in core.request_id, which reads PAN_LIKE
# above to judge an incoming id: the import goes one way.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


def redact(text: str) -> str:
    return PAN_LIKE.sub("[REDACTED]", text)


class RedactCardNumbersFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class StructuredFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the request's id while one is served (safe by then, so
    not redacted: ``core.request_id``) and, when there is one, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = redact(record.exc_text)
        return json.dumps(line)


class AsWarningWithoutTraceback(logging.Filter):
    """For a logger whose records are the client's doing, not a fault of ours: one WARNING line, no traceback.

    Django logs every request whose Host header is not in ALLOWED_HOSTS (``django.security.DisallowedHost``) at
    ERROR with the traceback of the exception it raised; a scanner trying host names would bury real errors. The
    client gets a 400 ``hostNotAllowed`` (core.errors.handler400); the log keeps the fact, on one line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = record.stack_info = None
        return True


class RoutineTasksAtDebug(logging.Filter):
    """Celery's INFO lines about the periodic tasks beat sends every few seconds (beat's "Sending due task", the
    worker's "received" and "succeeded") become DEBUG: a dozen lines a minute of nothing drown what an operator needs.
    Their failures, and every other task's lines, keep their level.

    The periodic tasks are those of ``CELERY_BEAT_SCHEDULE``, read at the first record (settings are loaded by then).
    """

    def __init__(self, name: str = ""):
        super().__init__(name)
        self._markers: tuple[str, ...] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not self._routine(record.getMessage()):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True

    def _routine(self, message: str) -> bool:
        if self._markers is None:
            from django.conf import settings

            tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
            # "Task <name>[<id>] received|succeeded ..." and "Scheduler: Sending due task <entry> (<name>)"
            self._markers = tuple(marker for task in sorted(tasks) for marker in (f"{task}[", f"({task})"))
        return any(marker in message for marker in self._markers)
