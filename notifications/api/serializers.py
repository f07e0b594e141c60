from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api import MAX_PAGE, BooleanField, StrictSerializer, StringField, error
from core.cards import holds_card_number
from notifications.models import EVENT_TYPES


class EventTypesField(serializers.ListField):
    def __init__(self, **kwargs):
        super().__init__(child=serializers.ChoiceField(choices=EVENT_TYPES), allow_empty=True, **kwargs)


@extend_schema_field({"type": "string", "format": "uri", "pattern": "^https?://[!-~]+$"})
class WebhookUrlField(StringField):
    """Its address is judged by the SSRF guard when the endpoint is saved (``core.outbound``): printable ASCII
    only, port 80, 443 or from 1024."""

    def __init__(self, **kwargs):
        super().__init__(min_length=1, max_length=2048, **kwargs)


class DescriptionField(StringField):
    """Shown back in clear, to the merchant and to operators: no card number in it (``core.cards``; the vault's free
    text says the same under the same error name), judged once its length is."""

    def run_validators(self, value):
        super().run_validators(value)
        if holds_card_number(value):
            raise error("fieldContainsCardNumber")


class EndpointCreateInput(StrictSerializer):
    url = WebhookUrlField(help_text="https:// URL on the public internet")
    eventTypes = EventTypesField(required=False, help_text="Event types to receive; absent or empty: all")
    description = DescriptionField(max_length=255, required=False, allow_blank=True)


class EndpointUpdateInput(EndpointCreateInput):
    url = WebhookUrlField(required=False)
    enabled = BooleanField(required=False)


class EndpointOutput(serializers.Serializer):
    id = serializers.CharField()
    url = serializers.URLField()
    description = serializers.CharField()
    eventTypes = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES))
    enabled = serializers.BooleanField()
    disabledReason = serializers.CharField(allow_null=True)
    failingSince = serializers.DateTimeField(allow_null=True)
    createdAt = serializers.DateTimeField()


class EndpointCreatedOutput(EndpointOutput):
    secret = serializers.CharField(help_text="The signing secret (whsec_…), shown this once.")


class EndpointListOutput(serializers.Serializer):
    _embedded = serializers.DictField(child=EndpointOutput(many=True))


class SecretRotatedOutput(serializers.Serializer):
    secret = serializers.CharField(help_text="The new signing secret, shown this once.")
    previousSecretExpiresAt = serializers.DateTimeField(help_text="Until then the old secret signs too.")


class DeliveryStatusOutput(serializers.Serializer):
    endpointId = serializers.CharField()
    url = serializers.URLField()
    status = serializers.ChoiceField(choices=["PENDING", "SUCCEEDED", "FAILED"])
    attempts = serializers.IntegerField()
    lastStatusCode = serializers.IntegerField(allow_null=True)
    lastError = serializers.CharField(allow_null=True)
    nextAttemptAt = serializers.DateTimeField(allow_null=True)
    deliveredAt = serializers.DateTimeField(allow_null=True)


class EventOutput(serializers.Serializer):
    id = serializers.CharField(help_text="Also the webhook-id header of every delivery of this event.")
    type = serializers.ChoiceField(choices=EVENT_TYPES)
    createdAt = serializers.DateTimeField()
    data = serializers.DictField()
    deliveries = DeliveryStatusOutput(many=True)


class EventListOutput(serializers.Serializer):
    _embedded = serializers.DictField(child=EventOutput(many=True))
    page = serializers.DictField(child=serializers.IntegerField())


class EventQueryInput(serializers.Serializer):
    """Query parameters; the view's schema lists them from here."""

    type = serializers.ChoiceField(choices=EVENT_TYPES, required=False, help_text="Only events of this type")
    page = serializers.IntegerField(
        min_value=1, max_value=MAX_PAGE, required=False, default=1, help_text="Page number, from 1"
    )
    pageSize = serializers.IntegerField(
        min_value=1, max_value=100, required=False, default=20, help_text="Events a page, 1 to 100"
    )


class RedeliverOutput(serializers.Serializer):
    deliveries = serializers.IntegerField(help_text="How many deliveries were started again.")
