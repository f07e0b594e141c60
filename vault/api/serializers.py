"""Request and response bodies of the card-token API, as in the card-token provider's public documentation.

Input fields publish in the OpenAPI schema what they enforce (patterns, enums, lengths; see ``core.schema``). What
no JSON Schema can say is in the code alone: the Luhn check, dates that must not be in the past nor past a token's
lifetime, and free text that must hold no card number.

The card rules are ``vault.rules``, which the bulk import and browser capture call too: the fields here check a
value's characters with them, and declare their bounds from there, which DRF's length and range validators enforce
under the same error names (``core.errors.DRF_CODES``).
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api import MAX_PAGE, DateTimeField, IntegerField, StrictSerializer, StringField, error
from vault import cards, rules
from vault.models import TOKEN_ID_ALPHABET, TOKEN_ID_LENGTH
from vault.services.tokenize import default_lifetime


def checked(rule, *values):
    """``rule(*values)``, its refusal raised as a validation error under the rule's error name."""
    try:
        return rule(*values)
    except rules.RuleBroken as broken:
        raise error(broken.name, broken.message) from None


def bounded(bounds: rules.Bounds, **kwargs) -> dict:
    return {"min_length": bounds.min_length, "max_length": bounds.max_length, **kwargs}


# ------------------------------------------------------------------------------------------------------------
# Input
# ------------------------------------------------------------------------------------------------------------
@extend_schema_field(
    {"type": "string", "pattern": f"^[0-9]{{{rules.CARD_NUMBER.min_length},{rules.CARD_NUMBER.max_length}}}$"}
)
class CardNumberField(StringField):
    """12 to 19 digits passing the Luhn check. Its errors never quote the number."""

    def to_internal_value(self, data):
        return checked(rules.card_number, super().to_internal_value(data))


class FreeTextField(StringField):
    """A string the vault keeps and shows back in clear: no card number in it (``rules.no_card_number``), judged
    once its length is, so that an over-long value is never scanned."""

    def run_validators(self, value):
        super().run_validators(value)
        checked(rules.no_card_number, value)


@extend_schema_field({"type": "string", "pattern": "^[^&<\\u0000]*$"})
class DescriptionField(FreeTextField):
    def __init__(self, **kwargs):
        super().__init__(**bounded(rules.DESCRIPTION, **kwargs))

    def to_internal_value(self, data):
        return checked(rules.description_characters, super().to_internal_value(data))


@extend_schema_field({"type": "string", "pattern": f"^{rules.SCHEME_REFERENCE_ALLOWED.pattern}$"})
class SchemeTransactionReferenceField(FreeTextField):
    def __init__(self, **kwargs):
        super().__init__(**bounded(rules.SCHEME_REFERENCE, **kwargs))

    def to_internal_value(self, data):
        return checked(rules.scheme_reference_characters, super().to_internal_value(data))


class CardHolderNameField(FreeTextField):
    def __init__(self, **kwargs):
        super().__init__(**bounded(rules.HOLDER_NAME, **kwargs))


class NamespaceField(FreeTextField):
    def __init__(self, **kwargs):
        super().__init__(**bounded(rules.NAMESPACE, **kwargs))


@extend_schema_field({"type": "string", "enum": sorted(cards.COUNTRY_CODES)})
class CountryCodeField(StringField):
    """ISO 3166-1 alpha-2: the schema lists the codes; the address checks them after the length."""

    def __init__(self, **kwargs):
        super().__init__(**bounded(rules.COUNTRY_CODE, **kwargs))


class AddressLineField(FreeTextField):
    def __init__(self, line: str, **kwargs):
        super().__init__(**bounded(rules.ADDRESS_LINES[line], **kwargs))


@extend_schema_field({"type": "string", "enum": ["card/front"]})
class CardFrontTypeField(StringField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value != "card/front":
            raise error("fieldHasInvalidValue", 'The payment instrument type must be "card/front"')
        return value


class CardExpiryDateInput(StrictSerializer):
    month = IntegerField(min_value=rules.EXPIRY_MONTHS[0], max_value=rules.EXPIRY_MONTHS[1])
    year = IntegerField(min_value=rules.EXPIRY_YEARS[0], max_value=rules.EXPIRY_YEARS[1])

    def validate(self, attrs):
        checked(rules.expiry_not_past, attrs["month"], attrs["year"])
        return attrs


class BillingAddressInput(StrictSerializer):
    address1 = AddressLineField("address1")
    address2 = AddressLineField("address2", required=False)
    address3 = AddressLineField("address3", required=False)
    postalCode = AddressLineField("postalCode")
    city = AddressLineField("city")
    state = AddressLineField("state", required=False)
    countryCode = CountryCodeField()

    def validate_countryCode(self, value):
        return checked(rules.country_code_known, value)


class PaymentInstrumentInput(StrictSerializer):
    type = CardFrontTypeField(help_text='Always "card/front".')
    cardHolderName = CardHolderNameField()
    cardNumber = CardNumberField()
    cardExpiryDate = CardExpiryDateInput()
    billingAddress = BillingAddressInput(required=False)


class TokenCreateInput(StrictSerializer):
    description = DescriptionField(required=False)
    tokenExpiryDateTime = DateTimeField(required=False)
    namespace = NamespaceField(required=False)
    schemeTransactionReference = SchemeTransactionReferenceField(required=False)
    paymentInstrument = PaymentInstrumentInput()

    def validate_tokenExpiryDateTime(self, value):
        return checked(rules.token_expiry, value, default_lifetime())


@extend_schema_field({"type": "string", "pattern": f"^[{TOKEN_ID_ALPHABET}]{{{TOKEN_ID_LENGTH}}}$"})
class TokenIdQueryField(StringField):
    """A tokenId to look up. Anything else is the tokenId of nothing: 404, as a malformed id in a path."""


class TokenQueryInput(serializers.Serializer):
    """Query parameters: text by nature, so numbers are parsed from it (unlike JSON bodies). The view's schema
    lists them from here, bounds included."""

    # A query stores nothing: a namespace that cannot exist (one holding a card number) lists no tokens.
    namespace = StringField(**bounded(rules.NAMESPACE), required=False, help_text="List the tokens of this namespace")
    tokenId = TokenIdQueryField(required=False, help_text="Find the token with this tokenId")
    page = serializers.IntegerField(
        min_value=1, max_value=MAX_PAGE, required=False, default=1, help_text="Page number, from 1"
    )
    pageSize = serializers.IntegerField(
        min_value=1, max_value=100, required=False, default=20, help_text="Tokens a page, 1 to 100"
    )


# ------------------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------------------
class LinkOutput(serializers.Serializer):
    href = serializers.URLField()


class CurieOutput(serializers.Serializer):
    href = serializers.CharField()
    name = serializers.CharField()
    templated = serializers.BooleanField()


class CardExpiryDateOutput(serializers.Serializer):
    month = serializers.IntegerField()
    year = serializers.IntegerField()


class BillingAddressOutput(serializers.Serializer):
    address1 = serializers.CharField()
    address2 = serializers.CharField(required=False)
    address3 = serializers.CharField(required=False)
    postalCode = serializers.CharField()
    city = serializers.CharField()
    state = serializers.CharField(required=False)
    countryCode = serializers.CharField()


class MaskedCardOutput(serializers.Serializer):
    type = serializers.CharField(default="card/masked")
    cardNumber = serializers.CharField(help_text="Masked: first four and last four digits.")
    cardHolderName = serializers.CharField()
    cardExpiryDate = CardExpiryDateOutput()
    billingAddress = BillingAddressOutput(required=False)
    bin = serializers.CharField()
    brand = serializers.ChoiceField(
        choices=["VISA", "MASTERCARD", "AMEX", "DISCOVER", "DINERS", "JCB", "UNIONPAY", "MAESTRO", "UNKNOWN"]
    )


class TokenPaymentInstrumentOutput(serializers.Serializer):
    type = serializers.CharField(default="card/tokenized")
    href = serializers.URLField()


class ConflictCardOutput(serializers.Serializer):
    cardHolderName = serializers.CharField(required=False)
    cardExpiryDate = CardExpiryDateOutput(required=False)
    billingAddress = BillingAddressOutput(
        required=False,
        help_text="The requested address, with the stored address2, address3 and state where the request left "
        "them out (leaving one out keeps it).",
    )


class ConflictsOutput(serializers.Serializer):
    """The requested values that differ from the stored ones, each where it sits in a create request. Only what
    conflicts is listed: ``paymentInstrument`` is left out when no card detail does (a conflict on the scheme
    transaction reference alone), rather than shown empty."""

    paymentInstrument = ConflictCardOutput(required=False, help_text="The card details that differ.")
    schemeTransactionReference = serializers.CharField(
        required=False,
        help_text="The requested reference, when the token holds a different one (a token without one takes the "
        "requested one silently: never a conflict).",
    )
    conflictsExpiryDateTime = serializers.DateTimeField()


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {
            "oneOf": [
                {"type": "object", "properties": {"href": {"type": "string", "format": "uri"}}},
                {"type": "array", "items": {"type": "object"}},
            ]
        },
    }
)
class LinksField(serializers.DictField):
    pass


class TokenOutput(serializers.Serializer):
    tokenPaymentInstrument = TokenPaymentInstrumentOutput()
    tokenId = serializers.CharField()
    description = serializers.CharField()
    tokenExpiryDateTime = serializers.DateTimeField()
    namespace = serializers.CharField(required=False)
    paymentInstrument = MaskedCardOutput()
    conflicts = ConflictsOutput(required=False, help_text="Only on 409: the requested values that differ.")
    _links = LinksField()


class TokenListOutput(serializers.Serializer):
    _embedded = serializers.DictField(child=serializers.ListField(child=TokenOutput()))
    page = serializers.DictField(child=serializers.IntegerField())
    _links = LinksField()


class RootOutput(StrictSerializer):
    """Closed (nothing else is ever in the root): that tells it apart from a token in ``GET /tokens``' oneOf."""

    _links = LinksField()


class TokenConflictsOutput(serializers.Serializer):
    tokenId = serializers.CharField()
    paymentInstrument = MaskedCardOutput(help_text="The data stored now.")
    conflicts = ConflictsOutput(help_text="The pending requested data that differed.")
    _links = LinksField()


class PlainCardOutput(serializers.Serializer):
    type = serializers.CharField(default="card/plain")
    cardNumber = serializers.CharField(help_text="The full card number.")
    cardHolderName = serializers.CharField()
    cardExpiryDate = CardExpiryDateOutput()
    billingAddress = BillingAddressOutput(required=False)


class DetokenizeOutput(serializers.Serializer):
    tokenId = serializers.CharField()
    tokenExpiryDateTime = serializers.DateTimeField()
    paymentInstrument = PlainCardOutput()


class RelationBodyOutput(serializers.Serializer):
    description = serializers.CharField()
    example = serializers.JSONField(
        help_text="A body this method accepts; text in <angle brackets> stands for a "
        "value (a card number is never shown)."
    )


class RelationMethodOutput(serializers.Serializer):
    description = serializers.CharField()
    operationId = serializers.CharField(help_text="The operation in the OpenAPI schema (/api/schema/).")
    scope = serializers.CharField(help_text="The scope the API key needs.")
    body = RelationBodyOutput(allow_null=True, help_text="null when the method takes no body.")
    responses = serializers.DictField(child=serializers.CharField(), help_text="What each status code means here.")


class RelationOutput(serializers.Serializer):
    """The document a curie resolves to: one link relation (``relations.RELATIONS``)."""

    rel = serializers.CharField(help_text="The curied name, as a key of _links: tokens:<name>.")
    description = serializers.CharField(help_text="What the link leads to.")
    methods = serializers.DictField(child=RelationMethodOutput(), help_text="By HTTP method.")
