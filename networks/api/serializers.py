"""Request and response bodies of the network-token API (``/network-tokens``).

Its free text (account ids, emails, correlation ids, a card's holder name) is kept and shown back in clear, in
answers, webhooks and the admin: like the vault's, it holds no card number (``vault.api.serializers.FreeTextField``).
"""

import re

from django.core.validators import EmailValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api import MAX_PAGE, StrictSerializer, StringField, error
from networks.models import NETWORKS, Batch, LifecycleEvent, NetworkToken, ProvisioningRequest
from vault.api.serializers import (
    CardExpiryDateInput,
    CardExpiryDateOutput,
    CardHolderNameField,
    CardNumberField,
    FreeTextField,
)

BATCH_MAX_ITEMS = 10_000
CORRELATION_MAX_LENGTH = 36
CARD_SOURCES = ("token", "card", "encryptedData")
LAST_DIGITS = re.compile(r"[0-9]{4}")


# ------------------------------------------------------------------------------------------------------------
# Input
# ------------------------------------------------------------------------------------------------------------
class TokenReferenceField(StringField):
    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "The vault token: its href or its tokenId.")
        super().__init__(min_length=1, max_length=200, **kwargs)


class CorrelationIdField(FreeTextField):
    def __init__(self, **kwargs):
        super().__init__(min_length=1, max_length=CORRELATION_MAX_LENGTH, **kwargs)


class AccountIdField(FreeTextField):
    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "Your shopper's account; Visa and Amex reuse a tokenId per accountId.")
        super().__init__(min_length=1, max_length=64, **kwargs)


# Django's EmailValidator wants a top-level label of two characters or more, which the "email" format does not.
@extend_schema_field({"type": "string", "format": "email", "pattern": "\\.[A-Za-z0-9-]{1,62}[A-Za-z0-9]$"})
class EmailField(FreeTextField):
    """An email address; its error never quotes the value."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "The shopper's email; required for American Express cards.")
        super().__init__(min_length=1, max_length=254, **kwargs)
        self.validators.append(EmailValidator(message="The email address is not valid", code="fieldHasInvalidValue"))


# Five base64url parts (header, encrypted key, IV, ciphertext, tag); whether they decrypt is jwe.decrypt_card's call.
JWE_COMPACT = "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*\\.[A-Za-z0-9_-]*\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*$"


@extend_schema_field({"type": "string", "pattern": JWE_COMPACT})
class EncryptedDataField(StringField):
    def __init__(self, **kwargs):
        kwargs.setdefault(
            "help_text",
            "The card as a JWE compact string (RSA-OAEP-256, A256GCM) to the key at "
            "/network-tokens/encryption-key; its plaintext is the `card` object as JSON.",
        )
        super().__init__(min_length=1, max_length=100_000, **kwargs)


class CardInput(StrictSerializer):
    """A card sent in the body, or inside ``encryptedData`` once decrypted."""

    cardNumber = CardNumberField()
    cardExpiryDate = CardExpiryDateInput()
    cardHolderName = CardHolderNameField(required=False)


class ProvisionInput(StrictSerializer):
    """Exactly one card source: ``token``, ``card`` or ``encryptedData``."""

    schema_extra = {"oneOf": [{"required": [name]} for name in CARD_SOURCES]}  # see core.schema

    token = TokenReferenceField(required=False)
    card = CardInput(required=False)
    encryptedData = EncryptedDataField(required=False)
    accountId = AccountIdField(required=False)
    email = EmailField(required=False)

    def validate(self, attrs):
        given = [name for name in CARD_SOURCES if name in attrs]
        if not given:
            raise error("fieldIsMissing", "One of token, card or encryptedData is required")
        if len(given) > 1:
            raise error("fieldHasInvalidValue", "Only one of token, card or encryptedData may be given")
        return attrs


class BatchItemInput(StrictSerializer):
    token = TokenReferenceField()
    accountId = AccountIdField(required=False)
    email = EmailField(required=False)
    correlationId = CorrelationIdField(
        required=False,
        help_text="Your identifier of this item, 1 to 36 characters, carried by its webhook; the "
        "batch's id when absent.",
    )


class BatchItemsField(serializers.ListField):
    """1 to 10,000 items; the count is checked before any item is."""

    default_error_messages = {"fieldMustBeArray": "The field must be an array"}

    def __init__(self, **kwargs):
        # The bounds are checked in to_internal_value, under our error names; given here, they reach the schema.
        super().__init__(child=BatchItemInput(), min_length=1, max_length=BATCH_MAX_ITEMS, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("fieldMustBeArray")
        if not data:
            raise error("fieldIsEmpty", "The batch needs at least one item")
        if len(data) > BATCH_MAX_ITEMS:
            raise error("fieldHasInvalidValue", f"A batch holds at most {BATCH_MAX_ITEMS:,} items")
        return super().to_internal_value(data)


class BatchCreateInput(StrictSerializer):
    items = BatchItemsField(help_text=f"1 to {BATCH_MAX_ITEMS:,} vault tokens.")


class BatchQueryInput(serializers.Serializer):
    """Query parameters: text by nature, so numbers are parsed from it. The view's schema lists them from here."""

    page = serializers.IntegerField(
        min_value=1, max_value=MAX_PAGE, required=False, default=1, help_text="Page of failed items, from 1"
    )
    pageSize = serializers.IntegerField(
        min_value=1, max_value=1000, required=False, default=100, help_text="Failed items a page, 1 to 1000"
    )


@extend_schema_field({"type": "string", "pattern": f"^{LAST_DIGITS.pattern}$"})
class LastDigitsField(StringField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not LAST_DIGITS.fullmatch(value):
            raise error("stringFailedRegexCheck", "The last digits must be four digits")
        return value


class SimulateLifecycleInput(StrictSerializer):
    # CARD_UPDATED carries the reissued card's expiry, its last digits or both; the other events neither. Said
    # with ``not`` (OpenAPI 3.0 has no ``false`` schema, and a bare ``enum`` here would be merged into the named
    # enum of ``event`` by drf-spectacular's enum hook).
    schema_extra = {
        "oneOf": [
            {
                "properties": {
                    "event": {"not": {"enum": [t for t, _ in LifecycleEvent.TYPES if t != LifecycleEvent.CARD_UPDATED]}}
                },
                "anyOf": [{"required": ["cardExpiryDate"]}, {"required": ["cardLastDigits"]}],
            },
            {
                "properties": {
                    "event": {"not": {"enum": [LifecycleEvent.CARD_UPDATED]}},
                    "cardExpiryDate": {"not": {}},
                    "cardLastDigits": {"not": {}},
                }
            },
        ]
    }

    event = serializers.ChoiceField(choices=[t for t, _ in LifecycleEvent.TYPES])
    cardExpiryDate = CardExpiryDateInput(required=False, help_text="CARD_UPDATED only: the reissued card's expiry.")
    cardLastDigits = LastDigitsField(
        required=False, help_text="CARD_UPDATED only: the reissued card's last four digits."
    )

    def validate(self, attrs):
        updates = [name for name in ("cardExpiryDate", "cardLastDigits") if name in attrs]
        if attrs["event"] == LifecycleEvent.CARD_UPDATED and not updates:
            raise error("fieldIsMissing", "CARD_UPDATED needs cardExpiryDate or cardLastDigits")
        if attrs["event"] != LifecycleEvent.CARD_UPDATED and updates:
            raise serializers.ValidationError(
                {
                    name: error("fieldHasInvalidValue", "Only a CARD_UPDATED event changes the card").detail
                    for name in updates
                }
            )
        return attrs


# ------------------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------------------
def enum_output(values, **kwargs) -> serializers.CharField:
    """A string out of ``values``, listed in its description: a named enum would collide with the other apps'
    enums of the same field names (status, type) in the schema's components."""
    return serializers.CharField(help_text="One of " + ", ".join(values) + ".", **kwargs)


NETWORK_TOKEN_STATUSES = [status for status, _ in NetworkToken.STATUSES]


class JwkOutput(serializers.Serializer):
    kty = serializers.CharField(help_text="RSA")
    use = serializers.CharField(help_text="enc")
    alg = serializers.CharField(help_text="RSA-OAEP-256")
    kid = serializers.CharField()
    n = serializers.CharField()
    e = serializers.CharField()


class JwkSetOutput(serializers.Serializer):
    keys = JwkOutput(many=True)


class IssuerOutput(serializers.Serializer):
    name = serializers.CharField()


class NetworkTokenMetadataOutput(serializers.Serializer):
    tokenId = serializers.CharField()
    network = enum_output(NETWORKS)
    status = enum_output(NETWORK_TOKEN_STATUSES)
    tokenLastDigits = serializers.CharField()
    tokenExpiryDate = CardExpiryDateOutput()
    cardBin = serializers.CharField()
    cardLastDigits = serializers.CharField()
    cardExpiryDate = CardExpiryDateOutput()
    paymentAccountReference = serializers.CharField()
    cardArt = serializers.ListField(child=serializers.CharField(), help_text="Card art identifiers of the issuer.")
    issuer = IssuerOutput()
    correlationId = serializers.CharField()


class LifecycleEventOutput(serializers.Serializer):
    type = enum_output([t for t, _ in LifecycleEvent.TYPES])
    oldStatus = enum_output(NETWORK_TOKEN_STATUSES)
    newStatus = enum_output(NETWORK_TOKEN_STATUSES)
    at = serializers.DateTimeField()


class NetworkTokenOutput(NetworkTokenMetadataOutput):
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()
    lifecycle = LifecycleEventOutput(many=True, help_text="What the network reported, oldest first.")


class RequestAcceptedOutput(serializers.Serializer):
    requestId = serializers.CharField()
    correlationId = serializers.CharField()
    status = enum_output([ProvisioningRequest.PENDING])


class FailureOutput(serializers.Serializer):
    errorName = serializers.CharField()
    message = serializers.CharField()


class ProvisioningRequestOutput(serializers.Serializer):
    requestId = serializers.CharField()
    correlationId = serializers.CharField()
    status = enum_output([s for s, _ in ProvisioningRequest.STATUSES])
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()
    attempts = serializers.IntegerField()
    networkToken = NetworkTokenMetadataOutput(
        allow_null=True,
        help_text="Once SUCCEEDED, or PENDING_ACTIVATION: the token was created INACTIVE (the issuer "
        "wants a step-up) and is announced by a webhook once the network activates it.",
    )
    error = FailureOutput(allow_null=True, help_text="Once FAILED.")


class BatchCountsOutput(serializers.Serializer):
    PENDING = serializers.IntegerField()
    QUEUED = serializers.IntegerField()
    RUNNING = serializers.IntegerField()
    PENDING_ACTIVATION = serializers.IntegerField(
        help_text="Items whose token the issuer wants a step-up for: announced once the network activates it."
    )
    SUCCEEDED = serializers.IntegerField()
    FAILED = serializers.IntegerField()


class BatchAcceptedOutput(serializers.Serializer):
    id = serializers.CharField()
    status = enum_output([s for s, _ in Batch.STATUSES])
    counts = BatchCountsOutput()


class FailedItemOutput(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position in the request's items.")
    token = serializers.CharField(help_text="The href or tokenId sent (anything like a card number redacted).")
    errorName = serializers.CharField()
    message = serializers.CharField()


class PageOutput(serializers.Serializer):
    number = serializers.IntegerField()
    size = serializers.IntegerField()
    totalElements = serializers.IntegerField()
    totalPages = serializers.IntegerField()


class BatchOutput(BatchAcceptedOutput):
    total = serializers.IntegerField()
    createdAt = serializers.DateTimeField()
    completedAt = serializers.DateTimeField(allow_null=True)
    failedItems = FailedItemOutput(many=True, help_text="Paginated by page and pageSize.")
    page = PageOutput(help_text="The page of failedItems.")


class CryptogramOutput(serializers.Serializer):
    cryptogram = serializers.CharField()
    eci = serializers.CharField()
    tokenExpiryDate = CardExpiryDateOutput()
    cryptogramExpiryDateTime = serializers.DateTimeField()
    tokenNumber = serializers.CharField(required=False, help_text="Only for keys with the tokens:detokenize scope.")
