"""Request and response bodies of card capture: ``/capture-sessions`` (the merchant's server) and
``/capture/{id}/card`` (the shopper's browser, through the vault's frame).

A session's namespace and description are the fields of ``POST /tokens``. A card's fields here check only the body's
shape (JSON types, no unknown or missing field, no empty string): the values are judged by
``vault.capture.capture_session_submit``, after the client secret, with the card rules of ``POST /tokens``
(``vault.rules``), so that each refused card counts as a failed submission of the session. The bounds the schema
publishes for them are those rules'.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api import IntegerField, StrictSerializer, StringField
from core.schema import NO_NUL
from vault import rules
from vault.api.serializers import DescriptionField, MaskedCardOutput, NamespaceField
from vault.models import CAPTURE_OUTCOMES, CAPTURE_STATUSES, CaptureSession

ORIGIN_MAX_LENGTH = CaptureSession._meta.get_field("origin").max_length
CLIENT_SECRET_MAX_LENGTH = 255
STATUSES = list(CAPTURE_STATUSES)
OUTCOMES = list(CAPTURE_OUTCOMES)


# ------------------------------------------------------------------------------------------------------------
# Input
# ------------------------------------------------------------------------------------------------------------
@extend_schema_field(
    {
        "type": "string",
        "pattern": "^[A-Za-z]+://[A-Za-z0-9.-]+(:[0-9]+)?$",
        "maxLength": ORIGIN_MAX_LENGTH,
        "example": "https://shop.example",
    }
)
class OriginField(StringField):
    """Judged by ``vault.capture.capture_origin_normalise``: https (http for localhost or 127.0.0.1 where loopback is
    allowed), a host and an optional port, nothing else."""

    def __init__(self, **kwargs):
        super().__init__(max_length=ORIGIN_MAX_LENGTH, **kwargs)


class CaptureSessionCreateInput(StrictSerializer):
    origin = OriginField(
        help_text="The exact origin of the page that will show the card form (its window.location.origin), e.g. "
        "https://shop.example: only that page may frame it, and the outcome is posted to it alone."
    )
    namespace = NamespaceField(required=False, help_text="The namespace the card is tokenized in, as POST /tokens")
    description = DescriptionField(required=False, help_text="The token's description, as POST /tokens")


@extend_schema_field(
    {"type": "string", "pattern": f"^[0-9]{{{rules.CARD_NUMBER.min_length},{rules.CARD_NUMBER.max_length}}}$"}
)
class CaptureCardNumberField(StringField):
    pass


@extend_schema_field(
    {
        "type": "string",
        "minLength": rules.HOLDER_NAME.min_length,
        "maxLength": rules.HOLDER_NAME.max_length,
        "pattern": NO_NUL,
    }
)
class CaptureHolderNameField(StringField):
    pass


@extend_schema_field({"type": "integer", "minimum": rules.EXPIRY_MONTHS[0], "maximum": rules.EXPIRY_MONTHS[1]})
class CaptureMonthField(IntegerField):
    pass


@extend_schema_field({"type": "integer", "minimum": rules.EXPIRY_YEARS[0], "maximum": rules.EXPIRY_YEARS[1]})
class CaptureYearField(IntegerField):
    pass


class CaptureCardExpiryDateInput(StrictSerializer):
    month = CaptureMonthField()
    year = CaptureYearField()


class CaptureCardInput(StrictSerializer):
    """A wrong or missing client secret is 401, not a schema error: it is required by the schema, and checked by the
    session."""

    schema_extra = {"required": ["clientSecret", "cardNumber", "cardExpiryDate", "cardHolderName"]}

    clientSecret = StringField(
        required=False,
        allow_blank=True,
        max_length=CLIENT_SECRET_MAX_LENGTH,
        help_text="The session's client secret, as POST /capture-sessions gave it",
    )
    cardNumber = CaptureCardNumberField(help_text="12 to 19 digits passing the Luhn check")
    cardExpiryDate = CaptureCardExpiryDateInput(help_text="Not in the past")
    cardHolderName = CaptureHolderNameField()


# ------------------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------------------
class CaptureSessionOutput(serializers.Serializer):
    id = serializers.CharField(help_text="cs_…")
    url = serializers.URLField(help_text="The card form's page, which VaultCapture.mount frames")
    origin = serializers.CharField(help_text="As normalised: scheme://host[:port], lower case, no default port")
    namespace = serializers.CharField(allow_null=True)
    description = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(
        choices=STATUSES,
        help_text="open until it has its card (completed), had 5 failed submissions (locked) or its time is up "
        "(expired)",
    )
    failedSubmissions = serializers.IntegerField(help_text="Wrong client secrets and refused cards, at most 5")
    createdAt = serializers.DateTimeField()
    expiresAt = serializers.DateTimeField()
    completedAt = serializers.DateTimeField(required=False, help_text="Once completed")
    tokenId = serializers.CharField(required=False, help_text="Once completed: the card's token")
    href = serializers.URLField(required=False, help_text="Once completed: the token's href, as /tokens gives it")
    outcome = serializers.ChoiceField(
        choices=OUTCOMES, required=False, help_text="Once completed: as POST /tokens' 201, 200 or 409"
    )


class CaptureSessionCreatedOutput(CaptureSessionOutput):
    clientSecret = serializers.CharField(
        help_text="For the page's VaultCapture.mount only: never stored by the vault, never shown again"
    )


class CaptureTokenOutput(serializers.Serializer):
    """What the frame posts to the page, as its ``message`` event's data."""

    type = serializers.ChoiceField(choices=["vault.token"])
    tokenId = serializers.CharField()
    href = serializers.URLField()
    outcome = serializers.ChoiceField(
        choices=OUTCOMES,
        help_text="created (201), matched (200: the card was tokenized with these details already) or conflict "
        "(409: it was, with other details, which are kept; POST /tokens' conflicts say more)",
    )
    paymentInstrument = MaskedCardOutput()
