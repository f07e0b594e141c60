"""One error contract for the whole API.

Every failure, whether raised by our services, by DRF or by Django, leaves the API in the shape of the card-token
provider's public error reference::

    {"errorName": "bodyDoesNotMatchSchema", "message": "...",
     "validationErrors": [{"errorName": "panFailedLuhnCheck", "message": "...",
                           "jsonPath": "$.paymentInstrument.cardNumber"}]}

Messages are ours, chosen per error name: DRF's own texts sometimes quote the rejected input, and a rejected card
number must never be echoed back or logged.

Every error body also names its request, ``"requestId"`` (the answer's ``X-Request-Id``, core.request_id): the id a
merchant quotes to support, which finds the request's log lines and audit rows.
"""

import logging
from collections.abc import Callable

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.settings import api_settings

from core.request_id import current_request_id

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API answers in the shared shape; services raise its subclasses."""

    status_code = 400
    error_name = "bodyDoesNotMatchSchema"
    default_message = "The json body provided does not match the expected schema"

    def __init__(self, message: str | None = None, *, validation_errors: list[dict] | None = None):
        self.message = message or self.default_message
        self.validation_errors = validation_errors or []
        super().__init__(self.message)

    def as_dict(self) -> dict:
        body = {"errorName": self.error_name, "message": self.message}
        if self.validation_errors:
            body["validationErrors"] = self.validation_errors
        return body


class BodyDoesNotMatchSchema(ApiError):
    pass


class BodyIsNotJson(ApiError):
    error_name = "bodyIsNotJson"
    default_message = "The body provided is not valid JSON"


class BodyIsEmpty(ApiError):
    error_name = "bodyIsEmpty"
    default_message = "The body provided is empty; this request needs a JSON body"


class BodyIsTooLarge(ApiError):
    """A body larger than ``API_MAX_BODY_BYTES`` (``core.http``): refused before it is read."""

    status_code = 413
    error_name = "bodyIsTooLarge"
    default_message = "The body provided is too large"

    def __init__(self, limit: int):
        super().__init__(f"The body provided is larger than the {limit:,} bytes this API accepts")


class AccessDenied(ApiError):
    status_code = 401
    error_name = "accessDenied"
    default_message = "Access to the requested resource has been denied"


class Forbidden(AccessDenied):
    status_code = 403


class ResourceNotFound(ApiError):
    status_code = 404
    error_name = "resourceNotFound"
    default_message = "The requested resource was not found"


class EndpointNotFound(ApiError):
    status_code = 404
    error_name = "endpointNotFound"
    default_message = "The requested endpoint does not exist"


class MethodNotAllowed(ApiError):
    status_code = 405
    error_name = "methodNotAllowed"
    default_message = "The requested method is not allowed on this resource"


class UnsupportedContentType(ApiError):
    status_code = 415
    error_name = "unsupportedContentType"
    default_message = "The Content-Type header must be application/json"


class TooManyRequests(ApiError):
    status_code = 429
    error_name = "tooManyRequests"
    default_message = "Too many requests; slow down and retry later"


class InternalError(ApiError):
    status_code = 500
    error_name = "internalErrorOccurred"
    default_message = "An internal error occurred"


class ServiceUnavailable(ApiError):
    status_code = 503
    error_name = "serviceUnavailable"
    default_message = "The service is temporarily unavailable; retry later"


class IdempotencyKeyReused(ApiError):
    """An ``Idempotency-Key`` sent again with another request (another body, method or path): a key names one request,
    whose answer it keeps for 24 hours (``core.idempotency``)."""

    status_code = 422
    error_name = "idempotencyKeyReused"
    default_message = "This Idempotency-Key was used for another request; send a new key with a new request"


class RequestInProgress(ApiError):
    """The request first sent with this ``Idempotency-Key`` is still being served: the repeat is refused rather than
    served twice (``core.idempotency``)."""

    status_code = 409
    error_name = "requestInProgress"
    default_message = "The request sent with this Idempotency-Key is still in progress; retry once it has finished"


class KeysNotReady(ApiError):
    """This server's vault keys do not match the check values stored with the cards (``CardKeysMismatch``:
    a key missing from the ring, another key under a version, another fingerprint key). Card operations wait for an
    operator; the rest of the API serves. What differs is in the log, not in the answer."""

    status_code = 503
    error_name = "keysNotReady"
    default_message = (
        "Card operations are paused on this server until its vault keys match the stored cards; retry later"
    )


class CardKeyUnavailable(ApiError):
    """A card stored under a key version no key is stored for (``CardKeyMissing``), or a key out of reach for now
    (``CardKeysUnreachable``: the key encryption key's provider does not answer). Not a ServiceUnavailable: the
    database is fine."""

    status_code = 503
    error_name = "serviceUnavailable"
    default_message = "The card's encryption key is not available on this server; retry later"
    unreachable_message = "The keys of card data cannot be reached just now; retry later"


class BusinessRuleError(ApiError):
    """A well-formed request that a business rule refuses; the subclass names the rule."""

    def __init__(self, error_name: str, message: str, *, status_code: int = 400):
        self.error_name = error_name
        self.status_code = status_code
        super().__init__(message)


# ------------------------------------------------------------------------------------------------------------
# Domain errors: what services raise when the request cannot be served, in the product's terms. The apps subclass
# them; ``DOMAIN_ANSWERS`` below is the one place that says how each is answered over HTTP.
# ------------------------------------------------------------------------------------------------------------
class DomainError(Exception):
    """Base of the errors services raise that are not a refusal of the request itself."""


class NotFound(DomainError):
    """No such object for this merchant: never made, deleted, expired or another merchant's (all alike). Its message
    is the answer's: it must say no more than that."""


class Unavailable(DomainError):
    """A service outside the product failed: a network's token service (next, a payment provider). ``transient``
    when trying again may succeed (a worker retries), ``timed_out`` when it did not answer in time. Answered 502, or
    504 when it timed out, under the subclass's ``error_name`` and message."""

    error_name = "serviceUnavailable"
    default_message = "A service this request needs is unavailable; try again later"
    timeout_message = "A service this request needs did not answer in time; try again later"

    def __init__(self, message: str | None = None, *, transient: bool = True, timed_out: bool = False):
        self.transient, self.timed_out = transient, timed_out
        self.message = message or (self.timeout_message if timed_out else self.default_message)
        super().__init__(self.message)

    def as_api_error(self) -> "ApiError":
        return BusinessRuleError(self.error_name, self.message, status_code=504 if self.timed_out else 502)


class DestinationUnavailable(Unavailable):
    """A forward's destination (a merchant's payment provider) refused the connection, failed TLS or did not answer in
    time: 502, or 504 when it timed out, both ``destinationUnavailable``. An unknown destination is a ``NotFound``."""

    error_name = "destinationUnavailable"
    default_message = "The destination could not be reached"
    timeout_message = "The destination did not answer in time"


class CardKeysMismatch(DomainError):
    """This server's card keys do not match the keys the data was written with (``vault.crypto``)."""


class CardKeyMissing(DomainError):
    """A card is stored under a key version no key is stored for (``vault.crypto``)."""


class CardKeysUnreachable(DomainError):
    """A key a card operation needs is not in this server's memory and the provider of the key encryption key (an
    HSM) cannot unwrap it now (``vault.keys``): 503, and the operation works again once it answers."""


class NotAuthenticated(DomainError):
    """A request that proves itself with a secret of its own instead of an API key (a capture session's client
    secret, ``vault.capture``) sent a wrong one or none: 401 ``accessDenied``."""


class CaptureSessionExpired(DomainError):
    """The capture session's time is up (``vault.capture``): 410 ``captureSessionExpired``."""


class CaptureSessionCompleted(DomainError):
    """The capture session has its card already (``vault.capture``): 409 ``captureSessionCompleted``."""


class CaptureSessionLocked(DomainError):
    """The capture session had its 5 failed submissions and takes no card any more, even with the right secret
    (``vault.capture``): 403 ``captureSessionLocked``."""


DOMAIN_ANSWERS: dict[type[DomainError], Callable[[DomainError], ApiError]] = {
    NotFound: lambda exc: ResourceNotFound(str(exc) or None),
    Unavailable: lambda exc: exc.as_api_error(),
    # Their messages name the problems, for the log: never in an answer.
    CardKeysMismatch: lambda exc: KeysNotReady(),  # the vault logged the problems when it found them
    CardKeyMissing: lambda exc: CardKeyUnavailable(),  # the ring logged the version
    CardKeysUnreachable: lambda exc: CardKeyUnavailable(CardKeyUnavailable.unreachable_message),  # logged per outage
    NotAuthenticated: lambda exc: AccessDenied(str(exc) or None),
    CaptureSessionExpired: lambda exc: BusinessRuleError("captureSessionExpired", str(exc), status_code=410),
    CaptureSessionCompleted: lambda exc: BusinessRuleError("captureSessionCompleted", str(exc), status_code=409),
    CaptureSessionLocked: lambda exc: BusinessRuleError("captureSessionLocked", str(exc), status_code=403),
}


# ------------------------------------------------------------------------------------------------------------
# Validation errors: DRF's codes to our names, nested error dicts to JSON paths.
# ------------------------------------------------------------------------------------------------------------
VALIDATION_MESSAGES = {
    "fieldIsMissing": "The field is missing",
    "unrecognizedField": "The field is not recognized",
    "fieldHasInvalidValue": "The field has an invalid value",
    "panFailedLuhnCheck": "The card number failed the Luhn check",
    "stringIsTooShort": "The string is too short",
    "stringIsTooLong": "The string is too long",
    "stringFailedRegexCheck": "The string does not match the required pattern",
    "fieldMustBeString": "The field must be a string",
    "fieldMustBeInteger": "The field must be an integer",
    "fieldMustBeObject": "The field must be an object",
    "fieldMustBeArray": "The field must be an array",
    "fieldMustBeBoolean": "The field must be true or false",
    "integerIsTooSmall": "The integer is too small",
    "integerIsTooLarge": "The integer is too large",
    "fieldIsNull": "The field must not be null",
    "fieldIsEmpty": "The field must not be empty",
    "dateHasInvalidFormat": "The date does not have a valid ISO 8601 format",
    "dateIsInThePast": "The date must be in the future",
    # Free text is kept and shown back in clear: a card number belongs in a cardNumber field, never there (core.cards).
    "fieldContainsCardNumber": "The field holds what looks like a card number, which it must not",
}

DRF_CODES = {
    "required": "fieldIsMissing",
    "null": "fieldIsNull",
    "blank": "fieldIsEmpty",
    "empty": "fieldIsEmpty",
    "max_length": "stringIsTooLong",
    "min_length": "stringIsTooShort",
    "max_value": "integerIsTooLarge",
    "min_value": "integerIsTooSmall",
    "invalid": "fieldHasInvalidValue",
    "invalid_choice": "fieldHasInvalidValue",
    "not_a_dict": "fieldMustBeObject",
    "not_a_list": "fieldMustBeArray",
    "max_string_length": "stringIsTooLong",
    # Every string field refuses these (DRF's CharField validators): PostgreSQL cannot store a NUL, and a lone
    # surrogate is no character at all. The published schema excludes NUL with a pattern, hence its name.
    "null_characters_not_allowed": "stringFailedRegexCheck",
    "surrogate_characters_not_allowed": "fieldHasInvalidValue",
}


def validation_errors(detail, path: str = "$") -> list[dict]:
    """Flatten DRF's nested error detail into ``[{errorName, message, jsonPath}]``."""
    if isinstance(detail, dict):
        errors = []
        for key, value in detail.items():
            if key in ("non_field_errors", api_settings.NON_FIELD_ERRORS_KEY):
                child = path
            elif isinstance(key, int):
                child = f"{path}[{key}]"
            else:
                child = f"{path}.{key}"
            errors.extend(validation_errors(value, child))
        return errors
    if isinstance(detail, list):
        errors = []
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)):
                errors.extend(validation_errors(value, f"{path}[{index}]"))
            else:
                errors.extend(validation_errors(value, path))
        return errors
    code = getattr(detail, "code", None) or "invalid"
    if code in DRF_CODES:
        # DRF's own texts may quote the rejected input: never echo them.
        name = DRF_CODES[code]
        message = VALIDATION_MESSAGES[name]
    else:
        name, message = code, str(detail)
    return [{"errorName": name, "message": message, "jsonPath": path}]


def _api_error_for(exc: Exception) -> ApiError | None:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DomainError):
        for kind, answer in DOMAIN_ANSWERS.items():
            if isinstance(exc, kind):
                return answer(exc)
        return None
    if isinstance(exc, drf.ValidationError):
        return BodyDoesNotMatchSchema(validation_errors=validation_errors(exc.detail))
    if isinstance(exc, drf.ParseError):
        return BodyIsNotJson()
    if isinstance(exc, drf.UnsupportedMediaType):
        return UnsupportedContentType()
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        return AccessDenied()
    if isinstance(exc, (drf.PermissionDenied, DjangoPermissionDenied)):
        return Forbidden("The API key does not have the scope this request needs")
    if isinstance(exc, (drf.NotFound, Http404)):
        return ResourceNotFound()
    if isinstance(exc, drf.MethodNotAllowed):
        return MethodNotAllowed()
    if isinstance(exc, drf.Throttled):
        return TooManyRequests()
    if isinstance(exc, drf.NotAcceptable):
        return BusinessRuleError(
            "notAcceptable", "The Accept header asks for a media type this API cannot produce", status_code=406
        )
    if _database_unreachable(exc):
        return ServiceUnavailable()
    return None


def _database_unreachable(exc: Exception) -> bool:
    """The database is out of reach (restarting, failing over, out of connections, SQLite busy): the client should
    retry, and Django reconnects on a later request by itself. Other OperationalErrors (a missing table, bad SQL) are
    bugs, and stay 500s with a traceback in the log."""
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate:
        return sqlstate[:2] in ("08", "53", "57")  # connection exception, insufficient resources, shutting down
    if type(cause).__module__ == "sqlite3":
        return "locked" in str(exc)
    return True  # psycopg without a SQLSTATE: the connection could not be made or was lost


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every error in one shape; unknown errors are logged and become a bare 500."""
    error = _api_error_for(exc)
    if error is None:
        view = context.get("view")
        logger.exception("unhandled error in %s", type(view).__name__ if view else "api")
        error = InternalError()
    if isinstance(error, ServiceUnavailable):
        view = context.get("view")
        logger.warning("database unavailable in %s: %s", type(view).__name__ if view else "api", exc)
    response = Response(error_body(error), status=error.status_code)
    if error.status_code == 503:
        response["Retry-After"] = "1"
    if error.status_code == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    retry_after = getattr(exc, "wait", None)
    if error.status_code == 429 and retry_after:
        response["Retry-After"] = str(int(retry_after) + 1)
    return response


def error_body(error: ApiError) -> dict:
    """The body of an error answer: the error in the shape, and the id of the request it answers."""
    body = error.as_dict()
    request_id = current_request_id()
    if request_id is not None:
        body["requestId"] = request_id
    return body


def json_error(error: ApiError) -> JsonResponse:
    """The same shape outside DRF (Django's 404/500 handlers)."""
    return JsonResponse(error_body(error), status=error.status_code)


def handler404(request, exception=None):
    return json_error(EndpointNotFound())


def handler500(request):
    return json_error(InternalError())


def handler400(request, exception=None):
    """Django's answer to a SuspiciousOperation, above all a Host header not in ``ALLOWED_HOSTS`` (a scanner, a
    misrouted client, a DNS name pointed at us): the API's shape rather than an HTML page. The log line is
    ``django.security``'s, made one WARNING line in settings (core.logging.AsWarningWithoutTraceback)."""
    from django.core.exceptions import DisallowedHost

    if isinstance(exception, DisallowedHost):
        return json_error(BusinessRuleError("hostNotAllowed", "This server does not serve the requested host"))
    return json_error(BusinessRuleError("badRequest", "The request could not be understood"))
