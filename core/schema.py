"""The OpenAPI schema says what the API enforces, no less: clients generate code from it, and a fuzzer that trusts
it sends only what it promises to accept.

What drf-spectacular cannot see by itself is added here: strict serializers refuse unknown fields
(``additionalProperties: false``) and may say more of their fields together (``schema_extra``, such as "exactly one
of these"), strings refuse NUL (DRF's ``ProhibitNullCharactersValidator``; PostgreSQL cannot store it), and a body
the view reads is required.
"""

import copy

from drf_spectacular.drainage import get_override, has_override
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension

from core import idempotency

# Any string without NUL; fields with a pattern of their own exclude it in that pattern.
NO_NUL = "^[^\\u0000]*$"


class StrictSerializerExtension(OpenApiSerializerExtension):
    target_class = "core.api.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        schema.update(getattr(self.target, "schema_extra", {}))
        return schema


class StringFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "core.api.StringField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request" and "pattern" not in schema and "enum" not in schema:
            schema["pattern"] = NO_NUL
        return schema


def string_schema(field) -> dict:
    """The request schema of one string field on its own (a bare JSON string body), as a property would get it."""
    schema = {"type": "string"}
    if has_override(field, "field"):
        schema.update(get_override(field, "field"))
    if getattr(field, "min_length", None) is not None or not field.allow_blank:
        schema["minLength"] = max(field.min_length or 0, 0 if field.allow_blank else 1)
    if getattr(field, "max_length", None) is not None:
        schema["maxLength"] = field.max_length
    schema.setdefault("pattern", NO_NUL)
    return schema


def require_request_bodies(result, generator, request, public):
    """POSTPROCESSING_HOOKS: every documented request body is required (views read theirs with ``read_body``, and
    an absent one is ``bodyIsEmpty``). drf-spectacular marks only bodies whose serializer has required fields."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["requestBody"]["required"] = True
    return result


def idempotency_in_schema(result, generator, request, public):
    """POSTPROCESSING_HOOKS: every POST that takes an API key honours ``Idempotency-Key`` (each is served by a
    ``core.api.ApiView``, which does it): the optional header, and the answers it adds to the operation's own, 400 for
    a malformed key, 409 ``requestInProgress`` and 422 ``idempotencyKeyReused``, in the error shape of its 401."""
    parameter = {
        "in": "header",
        "name": idempotency.HEADER,
        "required": False,
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": idempotency.KEY_MAX_LENGTH,
            "pattern": idempotency.KEY_PATTERN,
        },
        "description": "Your unique key for this request (printable ASCII, 1 to 255 characters), kept 24 hours: the "
        "same request sent again with it gets the first answer back (status, body, `Content-Type`, `Location`, and "
        f"`{idempotency.REPLAYED_HEADER}: true`) and is not done again. Another request with the same key is 422 "
        "`idempotencyKeyReused`; a repeat while the first is still being served is 409 `requestInProgress`. An "
        "answer of 500 or more keeps nothing, so the retry is served anew, but for a 504: the service behind the "
        "vault may have acted, so it is not asked again under this key.",
    }
    answers = {
        "400": "bodyDoesNotMatchSchema: a malformed Idempotency-Key",
        "409": "requestInProgress: the request first sent with this Idempotency-Key is still being served",
        "422": "idempotencyKeyReused: this Idempotency-Key was sent with another request (body, method or path)",
    }
    for operations in result.get("paths", {}).values():
        operation = operations.get("post")
        if not isinstance(operation, dict) or {"ApiKey": []} not in operation.get("security", []):
            continue
        operation.setdefault("parameters", []).append(copy.deepcopy(parameter))
        error_content = operation["responses"]["401"]["content"]
        for status, description in answers.items():
            _error_answer_add(operation["responses"], status, error_content, description)
    return result


def _error_answer_add(responses: dict, status: str, error_content: dict, description: str) -> None:
    """``status`` may also answer the error shape: a new answer, or the error shape beside what it answers already."""
    if status not in responses:
        responses[status] = {"content": copy.deepcopy(error_content), "description": description}
        return
    answer = responses[status]
    answer["description"] = f"{answer.get('description', '')}; {description}".lstrip("; ")
    content = answer.setdefault("content", {})
    for media_type, error in error_content.items():
        if media_type not in content:
            content[media_type] = copy.deepcopy(error)
            continue
        schema = content[media_type].get("schema", {})
        shapes = schema.get("oneOf", [schema])
        if error["schema"] not in shapes:
            content[media_type]["schema"] = {"oneOf": [*shapes, copy.deepcopy(error["schema"])]}
