"""Structured log lines with anything that looks like a card number redacted.

The redaction runs on the fully rendered record (message, arguments and traceback), so a card number cannot slip
into the logs through an exception message or a formatted argument, whichever library wrote the record.
"""

import json
import logging
import re

# A run of 12 or more digits (a longer one may hide a card number inside it), or 12 to 19 digits grouped by single
# spaces or dashes; never the fraction of a decimal number (a task's 0.0123456789012345 s is no card number).
PAN_LIKE = re.compile(r"(?<![\d.])(?:\d{12,}|(?:\d[ -]?){11,18}\d(?!\d))")


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
    """One JSON object a line: time, level, logger, message and, when there is one, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = redact(record.exc_text)
        return json.dumps(line)
