"""The OpenAPI schema says what the API enforces, no less: clients generate code from it, and a fuzzer that trusts
it sends only what it promises to accept.

What drf-spectacular cannot see by itself is added here: strict serializers refuse unknown fields
(``additionalProperties: false``) and may say more of their fields together (``schema_extra``, such as "exactly one
of these"), strings refuse NUL (DRF's ``ProhibitNullCharactersValidator``; PostgreSQL cannot store it), and a body
the view reads is required.
"""

from drf_spectacular.drainage import get_override, has_override
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension

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
