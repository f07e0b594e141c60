"""The HTTP edge shared by every app: the base view, strict serializer fields, path id converters, the error
body's schema and the view for unknown paths."""

from rest_framework import fields, serializers
from rest_framework.permissions import AllowAny
from rest_framework.settings import api_settings
from rest_framework.utils.serializer_helpers import BindingDict
from rest_framework.views import APIView

from core import idempotency, schema  # noqa: F401 - schema registers what the OpenAPI schema says of the classes below
from core.audit import Actor, audit_record
from core.errors import VALIDATION_MESSAGES, BodyIsEmpty, EndpointNotFound
from core.http import HalJsonParser, JsonParser


class ApiView(APIView):
    """Base view: a body is required where the view reads one (``bodyIsEmpty`` instead of 'field missing'), the
    key's rate limits are checked before its scopes, and every POST honours ``Idempotency-Key``."""

    parser_classes = [JsonParser, HalJsonParser]
    # Whether a call releases card data (a card or network token number), to its caller or anyone else: such calls
    # count against the key's much tighter card-data rate limit too (merchants.throttling). A view that releases it
    # to some keys only makes this a property of ``self.request``.
    releases_card_data = False

    def dispatch(self, request, *args, **kwargs):
        """DRF's, with the ``Idempotency-Key`` of a POST (``core.idempotency``) between the key's checks and the
        handler: a repeat gets the stored answer without the handler running; the first request's answer is stored
        once the handler has answered (its transactions committed), or its key released for a 5xx or an exception."""
        self.args, self.kwargs = args, kwargs
        request = self.request = self.initialize_request(request, *args, **kwargs)
        self.headers = self.default_response_headers
        claim = None
        try:
            try:
                self.initial(request, *args, **kwargs)
                claim = idempotency.claim_for(request)
                if claim is not None and claim.answer is not None:
                    response = claim.answer
                    if self.releases_card_data:
                        self._audit_replay(request, response)
                else:
                    handler = self.http_method_not_allowed
                    if request.method.lower() in self.http_method_names:
                        handler = getattr(self, request.method.lower(), self.http_method_not_allowed)
                    response = handler(request, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - DRF's: every error becomes an answer in the error shape
                response = self.handle_exception(exc)
            self.response = self.finalize_response(request, response, *args, **kwargs)
        except BaseException:
            if claim is not None and claim.answer is None:
                idempotency.idempotent_request_release(claim=claim)
            raise
        if claim is not None and claim.answer is None:
            idempotency.settle(claim, self.response)
        return self.response

    @staticmethod
    def _audit_replay(request, response) -> None:
        """A stored answer that holds card data is released again: audited like the first release."""
        audit_record(
            actor=Actor(
                f"api-key:{request.auth.prefix}", merchant=request.user, origin=request.META.get("REMOTE_ADDR", "")
            ),
            action="idempotency.replayed",
            object_type="request",
            object_id=f"{request.method} {request.path}"[:64],
            detail={"status": response.status_code},
        )

    def initial(self, request, *args, **kwargs):
        # DRF's, but for one step: the rate limits come before the scopes (DRF checks them after), so that a call
        # its key's scopes refuse, which is audited, spends the key's limits like any other.
        self.format_kwarg = self.get_format_suffix(**kwargs)
        request.accepted_renderer, request.accepted_media_type = self.perform_content_negotiation(request)
        request.version, request.versioning_scheme = self.determine_version(request, *args, **kwargs)
        self.perform_authentication(request)
        self.check_throttles(request)
        self.check_permissions(request)

    def read_body(self, request):
        if request.stream is None:
            raise BodyIsEmpty()
        return request.data

    def validated(self, request, serializer_class, **kwargs):
        serializer = serializer_class(data=self.read_body(request), context={"request": request}, **kwargs)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


# ------------------------------------------------------------------------------------------------------------
# Strict fields: JSON types are not coerced ("5" is not an integer, 5 is not a string).
# ------------------------------------------------------------------------------------------------------------
class StringField(serializers.CharField):
    default_error_messages = {"fieldMustBeString": VALIDATION_MESSAGES["fieldMustBeString"]}

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("fieldMustBeString")
        return super().to_internal_value(data)


class IntegerField(serializers.IntegerField):
    default_error_messages = {"fieldMustBeInteger": VALIDATION_MESSAGES["fieldMustBeInteger"]}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("fieldMustBeInteger")
        return super().to_internal_value(data)


class BooleanField(serializers.BooleanField):
    default_error_messages = {"fieldMustBeBoolean": VALIDATION_MESSAGES["fieldMustBeBoolean"]}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("fieldMustBeBoolean")
        return data


class DateTimeField(serializers.DateTimeField):
    default_error_messages = {
        "dateHasInvalidFormat": VALIDATION_MESSAGES["dateHasInvalidFormat"],
        "fieldMustBeString": VALIDATION_MESSAGES["fieldMustBeString"],
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("format", "%Y-%m-%dT%H:%M:%SZ")
        super().__init__(**kwargs)

    def to_internal_value(self, value):
        if not isinstance(value, str):
            self.fail("fieldMustBeString")
        try:
            return super().to_internal_value(value)
        except serializers.ValidationError:
            self.fail("dateHasInvalidFormat")


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not declare (``unrecognizedField``) and anything that is not a JSON object."""

    default_error_messages = {"fieldMustBeObject": VALIDATION_MESSAGES["fieldMustBeObject"]}

    @property
    def fields(self):
        """The declared fields, copied and bound once per class rather than for every instance as DRF does (three
        quarters of the cost of validating a card's body: 265 µs → 63 µs). Sound because a field keeps nothing of
        a call (the data, the errors and the validated values are the root serializer's own) and none of these
        reads the context: they are bound to an instance made without data or context, so that no request's
        data outlives the request."""
        cls = type(self)
        bound = cls.__dict__.get("_fields_bound")
        if bound is None:
            prototype = cls()
            bound = BindingDict(prototype)
            for name, field in prototype.get_fields().items():
                bound[name] = field
            cls._fields_bound = bound
        return bound

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise self._not_an_object()
        errors = {}
        unknown = set(data) - set(self.fields)
        for name in sorted(unknown):
            errors[name] = [fields.ErrorDetail(VALIDATION_MESSAGES["unrecognizedField"], code="unrecognizedField")]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = {**exc.detail, **errors} if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def run_validation(self, data=serializers.empty):
        if data is not fields.empty and data is not None and not isinstance(data, dict):
            raise self._not_an_object()
        return super().run_validation(data)

    def _not_an_object(self) -> serializers.ValidationError:
        # Keyed, as DRF expects of a serializer's errors; the error handler maps the key to this object's path.
        detail = fields.ErrorDetail(self.error_messages["fieldMustBeObject"], code="fieldMustBeObject")
        return serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [detail]})


def error(code: str, message: str = "") -> serializers.ValidationError:
    """A validation error carrying one of our error names as its code."""
    return serializers.ValidationError(message or VALIDATION_MESSAGES.get(code, code), code=code)


# A page number the database can always turn into an OFFSET (a 64-bit overflow was a 500).
MAX_PAGE = 1_000_000


def page_of(items, *, number: int, size: int, total: int | None = None) -> tuple[list, dict]:
    """Page ``number`` (from 1) of ``size`` items, and the ``page`` object every list answer carries.

    ``total`` saves a count query when the caller knows it already.
    """
    total = items.count() if total is None else total
    start = (number - 1) * size
    return list(items[start : start + size]), {
        "number": number,
        "size": size,
        "totalElements": total,
        "totalPages": -(-total // size),
    }


# ------------------------------------------------------------------------------------------------------------
# Path ids: each converter admits only its id's alphabet and length, so a malformed id (a NUL byte, which
# PostgreSQL refuses in text; a 5,000-character string) never reaches a query: it matches no route and answers
# 404 like any other path of nothing. drf-spectacular publishes the regex as the parameter's pattern.
# ------------------------------------------------------------------------------------------------------------
class IdConverter:
    regex = "[A-Za-z0-9_-]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class ErrorItemOutput(serializers.Serializer):
    errorName = serializers.CharField()
    message = serializers.CharField()
    jsonPath = serializers.CharField()


class ErrorOutput(serializers.Serializer):
    errorName = serializers.CharField()
    message = serializers.CharField()
    validationErrors = ErrorItemOutput(many=True, required=False)
    requestId = serializers.CharField(help_text="The id of the request answered, as its X-Request-Id header says")


class EndpointNotFoundView(APIView):
    """Any path the API does not know: ``endpointNotFound`` in the error shape, whatever the method."""

    authentication_classes = []
    permission_classes = [AllowAny]
    schema = None

    def dispatch(self, request, *args, **kwargs):
        self.args, self.kwargs, self.request = args, kwargs, self.initialize_request(request, *args, **kwargs)
        self.headers = self.default_response_headers
        response = self.handle_exception(EndpointNotFound())
        self.response = self.finalize_response(self.request, response, *args, **kwargs)
        return self.response
