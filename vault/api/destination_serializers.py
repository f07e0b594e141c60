"""Request and response bodies of ``/forward-destinations`` (DESIGN.md, "Forwarding").

What no OpenAPI 3.0 schema can say of a credential's name (no ``propertyNames``) is kept to what must hold: at most
``CREDENTIAL_NAME_MAX`` characters and no card number. A name is any other text the merchant chooses; a forward
refers to it as ``{{ destination.credentials.<name> }}``.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api import MAX_PAGE, StrictSerializer, StringField, error
from core.schema import NO_NUL
from vault import rules
from vault.api.serializers import FreeTextField, checked

CREDENTIALS_MAX = 20
CREDENTIAL_NAME_MAX = 255
CREDENTIAL_VALUE_MAX = 4096


@extend_schema_field({"type": "string", "format": "uri", "pattern": "^https?://[!-~]+$", "maxLength": 2048})
class DestinationUrlField(StringField):
    """Judged when the destination is saved (``vault.forwarding.destination_url_vet``): https, public addresses,
    printable ASCII, no query or fragment."""

    def __init__(self, **kwargs):
        super().__init__(min_length=1, max_length=2048, **kwargs)


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": CREDENTIALS_MAX,
        "additionalProperties": {
            "type": "string",
            "minLength": 1,
            "maxLength": CREDENTIAL_VALUE_MAX,
            "pattern": NO_NUL,
            "writeOnly": True,
        },
        "description": f"Name → secret, at most {CREDENTIALS_MAX}; a name is up to {CREDENTIAL_NAME_MAX} characters "
        "and holds no card number. Stored encrypted and never shown again: answers list the names only.",
    }
)
class CredentialsField(serializers.DictField):
    def __init__(self, **kwargs):
        super().__init__(child=StringField(min_length=1, max_length=CREDENTIAL_VALUE_MAX), **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            if len(data) > CREDENTIALS_MAX:
                raise error("fieldHasInvalidValue", f"At most {CREDENTIALS_MAX} credentials")
            for name in data:
                if len(name) > CREDENTIAL_NAME_MAX:
                    raise error("stringIsTooLong", f"A credential's name is at most {CREDENTIAL_NAME_MAX} characters")
                checked(rules.no_card_number, name)
        return super().to_internal_value(data)


class NameField(FreeTextField):
    def __init__(self, **kwargs):
        super().__init__(min_length=1, max_length=100, **kwargs)


class DestinationCreateInput(StrictSerializer):
    name = NameField(help_text="How you and the admin call it")
    url = DestinationUrlField(help_text="https:// origin on the public internet, with an optional path prefix")
    description = FreeTextField(max_length=255, required=False, allow_blank=True)
    credentials = CredentialsField(required=False)


class DestinationUpdateInput(DestinationCreateInput):
    """Every field optional; ``credentials`` replaces every stored credential."""

    name = NameField(required=False)
    url = DestinationUrlField(required=False)


class DestinationOutput(serializers.Serializer):
    id = serializers.CharField(help_text="fwd_…")
    name = serializers.CharField()
    url = serializers.URLField()
    description = serializers.CharField()
    credentials = serializers.ListField(child=serializers.CharField(), help_text="The names of its credentials")
    enabled = serializers.BooleanField(help_text="False once staff disabled it: forwards to it are refused")
    disabledReason = serializers.CharField(allow_null=True)
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()


class DestinationListOutput(serializers.Serializer):
    _embedded = serializers.DictField(child=DestinationOutput(many=True))
    page = serializers.DictField(child=serializers.IntegerField())


class DestinationQueryInput(serializers.Serializer):
    """Query parameters; the view's schema lists them from here."""

    page = serializers.IntegerField(
        min_value=1, max_value=MAX_PAGE, required=False, default=1, help_text="Page number, from 1"
    )
    pageSize = serializers.IntegerField(
        min_value=1, max_value=100, required=False, default=20, help_text="Destinations a page, 1 to 100"
    )
