"""``X-Request-Id``: one id names a request in its answer, its log lines, its audit rows and its error body, so an
operator handed the id by a merchant finds everything the request did.

The id is the client's when it sends a safe one (1 to 128 characters of ``A-Za-z0-9._:-``, and no run of digits
that could be a card number: core.logging's ``PAN_LIKE``), so a caller's own trace id follows the request through
the vault; otherwise one is made. An unsafe id is dropped unread: never echoed, logged or stored, since a client may
well have put a card number or a secret in it.

The id is kept in a context variable (``core.logging.REQUEST_ID``), which threads and tasks do not share, from the
middleware's start to ``request_finished``: Django sends that signal once the answer has been written, after the
server's access line (gunicorn's and runserver's), which so carries the id too. A request that comes next on the same
thread sets its own before anything is logged. ``core.queue`` carries the id into the messages a request sends, and a
worker sets it for the task's run.
"""

import re
import uuid

from django.core.signals import request_finished

from core.logging import PAN_LIKE, REQUEST_ID

HEADER = "X-Request-Id"
SAFE_CHARACTERS = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# PAN_LIKE groups digits by spaces or dashes and spares a decimal's fraction; in an id every separator may group
# digits (a card number in dotted groups of four, or after "0."), so the id's own separators are read as dashes.
SEPARATORS = re.compile(r"[._:]")


def is_safe(value: str) -> bool:
    """Whether ``value`` may be taken as a request id: echoed in answers, written in logs and audit rows."""
    return SAFE_CHARACTERS.fullmatch(value) is not None and not PAN_LIKE.search(SEPARATORS.sub("-", value))


def new_request_id() -> str:
    """A fresh id: 32 hex digits (a UUID4's), drawn again on the rare draw with twelve decimal digits in a row."""
    while not is_safe(made := uuid.uuid4().hex):
        pass
    return made


def current_request_id() -> str | None:
    """The id of the request (or of the task of a request) being served in this context, None outside one."""
    return REQUEST_ID.get()


def set_request_id(value: str | None) -> None:
    """Serve ``value`` (a safe id, or None once the work ends) as this context's request id."""
    REQUEST_ID.set(value)


class RequestIdMiddleware:
    """First of the middleware: every answer, its refusals and the admin's pages included, has the header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(HEADER, "")
        request.request_id = incoming if is_safe(incoming) else new_request_id()
        set_request_id(request.request_id)
        response = self.get_response(request)
        response[HEADER] = request.request_id
        return response


def _request_ended(**kwargs) -> None:
    set_request_id(None)


request_finished.connect(_request_ended, dispatch_uid="core.request_id")
