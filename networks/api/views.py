"""The network-token API (``/network-tokens``, scope ``network-tokens``): thin views over networks.services and
networks.selectors.

Answers carry non-sensitive metadata only. The token number leaves only in a cryptogram answer, and only to a key
that also has ``tokens:detokenize``; card numbers never leave at all.
"""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from core.api import ApiView, ErrorOutput, page_of
from core.cards import holds_card_number
from core.errors import VALIDATION_MESSAGES, BodyDoesNotMatchSchema, EndpointNotFound, validation_errors
from merchants.authentication import actor_for
from networks import jwe, selectors, services, tsp
from networks.api import representations
from networks.api import serializers as s
from vault.models import Token

ERRORS = {
    400: OpenApiResponse(ErrorOutput, description="bodyDoesNotMatchSchema, bodyIsNotJson or bodyIsEmpty"),
    401: OpenApiResponse(ErrorOutput, description="accessDenied: no or unknown API key"),
    403: OpenApiResponse(ErrorOutput, description="accessDenied: the key lacks the network-tokens scope"),
    404: OpenApiResponse(ErrorOutput, description="resourceNotFound"),
    415: OpenApiResponse(ErrorOutput, description="unsupportedContentType"),
    422: OpenApiResponse(
        ErrorOutput,
        description="networkNotSupported, tokenizationDeclined, tokenNotActive or lifecycleTransitionNotAllowed",
    ),
    502: OpenApiResponse(ErrorOutput, description="networkUnavailable: the network's token service failed"),
    503: OpenApiResponse(
        ErrorOutput,
        description="networkNotConfigured: no token service is configured for the card's network here",
    ),
    504: OpenApiResponse(ErrorOutput, description="networkUnavailable: the network's token service timed out"),
}
READ_ERRORS = {code: ERRORS[code] for code in (401, 403, 404)}

CORRELATION_HEADER = "X-Correlation-Id"
CORRELATION_PATH = f"$.headers.{CORRELATION_HEADER}"
CORRELATION_MAX_LENGTH = s.CORRELATION_MAX_LENGTH
CORRELATION_PARAMETER = OpenApiParameter(
    CORRELATION_HEADER,
    {"type": "string", "minLength": 1, "maxLength": CORRELATION_MAX_LENGTH},
    OpenApiParameter.HEADER,
    required=True,
    description="Your identifier of this tokenization session, 1 to 36 characters; echoed in answers and webhooks.",
)


# ------------------------------------------------------------------------------------------------------------
# Provisioning: the correlation header, the body and its one card source
# ------------------------------------------------------------------------------------------------------------
def _correlation_errors(request) -> list[dict]:
    value = request.headers.get(CORRELATION_HEADER)
    if value is None:
        name, message = "fieldIsMissing", f"The {CORRELATION_HEADER} header is required"
    elif not value:
        name, message = "fieldIsEmpty", f"The {CORRELATION_HEADER} header must not be empty"
    elif len(value) > CORRELATION_MAX_LENGTH:
        name = "stringIsTooLong"
        message = f"The {CORRELATION_HEADER} header has at most {CORRELATION_MAX_LENGTH} characters"
    elif holds_card_number(value):
        name, message = "fieldContainsCardNumber", VALIDATION_MESSAGES["fieldContainsCardNumber"]
    else:
        return []
    return [{"errorName": name, "message": message, "jsonPath": CORRELATION_PATH}]


class ProvisioningView(ApiView):
    required_scope = "network-tokens"

    def provisioning_input(self, request) -> tuple[str, dict]:
        """The correlation id and the validated body; header and body errors are reported together."""
        errors = _correlation_errors(request)
        try:
            data = self.validated(request, s.ProvisionInput)
        except serializers.ValidationError as exc:
            raise BodyDoesNotMatchSchema(validation_errors=errors + validation_errors(exc.detail)) from None
        if errors:
            raise BodyDoesNotMatchSchema(validation_errors=errors)
        return request.headers[CORRELATION_HEADER], data

    @staticmethod
    def card_source(request, data: dict) -> tuple[tsp.CardData | None, Token | None]:
        """``(card, None)`` for a card in the body (plain or encrypted), ``(None, vault_token)`` for a vault token."""
        if "token" in data:
            return None, selectors.vault_token_get(merchant=request.user, value=data["token"])
        if "card" in data:
            card = data["card"]
            return tsp.CardData(
                card["cardNumber"],
                card["cardExpiryDate"]["month"],
                card["cardExpiryDate"]["year"],
                card.get("cardHolderName", ""),
            ), None
        return jwe.decrypt_card(data["encryptedData"], shape=s.CardInput), None


class EncryptionKeyView(ApiView):
    required_scope = "network-tokens"

    @extend_schema(
        operation_id="network_tokens_encryption_key",
        summary="The public key to encrypt cards to (a JWK set)",
        description="Encrypt the card object as a JWE compact string with alg RSA-OAEP-256 and enc A256GCM to this "
        "key and send it as `encryptedData`.",
        responses={200: s.JwkSetOutput, **{code: ERRORS[code] for code in (401, 403)}},
    )
    def get(self, request):
        return Response(jwe.public_jwks())


class NetworkTokensView(ProvisioningView):
    @extend_schema(
        operation_id="network_tokens_create",
        summary="Get a network token now (synchronous)",
        description="The card comes from exactly one of `token` (a vault token's href or tokenId), `card` or "
        "`encryptedData`. Takes 1 to 3 seconds when the network is slow. Visa gives the same tokenId "
        "again for the same card and accountId, Amex for the same card, accountId and email (required "
        "for Amex); Mastercard a new one every time.",
        parameters=[CORRELATION_PARAMETER],
        request=s.ProvisionInput,
        responses={201: s.NetworkTokenMetadataOutput, **ERRORS},
    )
    def post(self, request):
        correlation_id, data = self.provisioning_input(request)
        card, vault_token = self.card_source(request, data)
        token = services.network_token_provision(
            origin=services.Origin(merchant=request.user, correlation_id=correlation_id, vault_token=vault_token),
            card=card or services.card_from_vault(vault_token),
            account_id=data.get("accountId", ""),
            email=data.get("email", ""),
        )
        return Response(representations.metadata(token), status=status.HTTP_201_CREATED)


class NetworkTokensAsyncView(ProvisioningView):
    @extend_schema(
        operation_id="network_tokens_create_async",
        summary="Ask for a network token in the background",
        description="Same body as the synchronous call. The outcome arrives as a `network_token.created` or "
        "`network_token.failed` webhook carrying the correlation id, and at "
        "`/network-tokens/requests/{requestId}`. Unsupported networks are refused at once.",
        parameters=[CORRELATION_PARAMETER],
        request=s.ProvisionInput,
        responses={
            202: s.RequestAcceptedOutput,
            **{code: ERRORS[code] for code in (400, 401, 403, 404, 415, 422, 503)},
        },
    )
    def post(self, request):
        correlation_id, data = self.provisioning_input(request)
        card, vault_token = self.card_source(request, data)
        accepted = services.provisioning_request_create(
            merchant=request.user,
            correlation_id=correlation_id,
            card=card,
            vault_token=vault_token,
            account_id=data.get("accountId", ""),
            email=data.get("email", ""),
        )
        return Response(representations.request_accepted_body(accepted), status=status.HTTP_202_ACCEPTED)


class ProvisioningRequestView(ApiView):
    required_scope = "network-tokens"

    @extend_schema(
        operation_id="network_token_request_get",
        summary="An asynchronous request and its outcome",
        responses={200: s.ProvisioningRequestOutput, **READ_ERRORS},
    )
    def get(self, request, request_id):
        asked = selectors.provisioning_request_get(merchant=request.user, request_id=request_id)
        return Response(representations.request_body(asked))


# ------------------------------------------------------------------------------------------------------------
# Batches
# ------------------------------------------------------------------------------------------------------------
class BatchesView(ApiView):
    required_scope = "network-tokens"

    @extend_schema(
        operation_id="network_token_batches_create",
        summary="Network tokens for up to 10,000 vault tokens",
        description="Calls are spread across issuers within each issuer's rate limit. A token that is unknown, or "
        "whose card cannot get a network token, does not refuse the batch: it becomes a failed item.",
        request=s.BatchCreateInput,
        responses={202: s.BatchAcceptedOutput, **{code: ERRORS[code] for code in (400, 401, 403, 415, 503)}},
    )
    def post(self, request):
        items = self.validated(request, s.BatchCreateInput)["items"]
        vault_tokens = selectors.vault_tokens_resolve(merchant=request.user, values=[item["token"] for item in items])
        batch = services.batch_create(
            merchant=request.user,
            entries=[
                services.BatchEntry(
                    token_reference=item["token"],
                    vault_token=vault_tokens.get(item["token"]),
                    account_id=item.get("accountId", ""),
                    email=item.get("email", ""),
                    correlation_id=item.get("correlationId", ""),
                )
                for item in items
            ],
        )
        batch = selectors.batch_get(merchant=request.user, batch_id=batch.public_id)  # its status as committed
        return Response(
            representations.batch_accepted_body(batch, counts=selectors.batch_counts(batch=batch)),
            status=status.HTTP_202_ACCEPTED,
        )


class BatchView(ApiView):
    required_scope = "network-tokens"

    @extend_schema(
        operation_id="network_token_batch_get",
        summary="A batch: its status, counts by state and its failed items",
        parameters=[s.BatchQueryInput],
        responses={200: s.BatchOutput, **READ_ERRORS, 400: ERRORS[400]},
    )
    def get(self, request, batch_id):
        batch = selectors.batch_get(merchant=request.user, batch_id=batch_id)
        query = s.BatchQueryInput(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        counts = selectors.batch_counts(batch=batch)
        failed, page = page_of(
            selectors.batch_failed_items(batch=batch),
            number=query.validated_data["page"],
            size=query.validated_data["pageSize"],
            total=counts["FAILED"],
        )
        return Response(representations.batch_body(batch, counts=counts, failed=failed, page=page))


# ------------------------------------------------------------------------------------------------------------
# One network token
# ------------------------------------------------------------------------------------------------------------
def network_token_answer(merchant, token_id: str) -> Response:
    """The merchant's network token with its lifecycle (the GET answer, and the simulator's)."""
    token = selectors.network_token_get(merchant=merchant, token_id=token_id)
    return Response(representations.network_token_body(token, lifecycle=selectors.lifecycle_list(token=token)))


class NetworkTokenView(ApiView):
    required_scope = "network-tokens"

    @extend_schema(
        operation_id="network_token_get",
        summary="A network token and its lifecycle",
        description="A deleted token still answers, with status DELETED.",
        responses={200: s.NetworkTokenOutput, **READ_ERRORS},
    )
    def get(self, request, token_id):
        return network_token_answer(request.user, token_id)

    @extend_schema(
        operation_id="network_token_delete",
        summary="Delete a network token at its network",
        description="Answers 422 lifecycleTransitionNotAllowed when it is already deleted.",
        responses={204: None, **READ_ERRORS, 422: ERRORS[422]},
    )
    def delete(self, request, token_id):
        token = selectors.network_token_get(merchant=request.user, token_id=token_id)
        services.network_token_delete(token=token, source="merchant API")
        return Response(status=status.HTTP_204_NO_CONTENT)


class CryptogramsView(ApiView):
    required_scope = "network-tokens"

    @property
    def releases_card_data(self) -> bool:
        # The token number is in the answer to keys that may also detokenize, and only to them.
        return self.request.auth.has_scope("tokens:detokenize")

    @extend_schema(
        operation_id="network_token_cryptogram_create",
        summary="A single-use cryptogram for a payment with an ACTIVE token",
        description="Audited; a use of the vault token behind it (in live, with less than half of its own lifetime "
        "left, its expiry moves 4 years on; in try, never). `tokenNumber` is included only for keys that "
        "also have the tokens:detokenize scope.",
        request=None,
        responses={200: s.CryptogramOutput, **READ_ERRORS, **{code: ERRORS[code] for code in (422, 502, 503, 504)}},
    )
    def post(self, request, token_id):
        token = selectors.network_token_get(merchant=request.user, token_id=token_id)
        cryptogram = services.cryptogram_create(
            token=token, actor=actor_for(request), reveal_number=self.releases_card_data
        )
        response = Response(representations.cryptogram_body(cryptogram))
        response["Cache-Control"] = "no-store"
        return response


class SimulateLifecycleView(ApiView):
    """The TSP simulator's lifecycle events, for tests and demos; absent (endpointNotFound) in production."""

    required_scope = "network-tokens"

    def initial(self, request, *args, **kwargs):
        # Read per request, before authentication: switched off, the route does not exist for anyone.
        if not settings.TSP_SIMULATOR_ENDPOINTS:
            raise EndpointNotFound()
        super().initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="network_token_simulate_lifecycle",
        summary="Simulator: the network reports a lifecycle event (not in production)",
        description="SUSPENDED, ACTIVE (resumed), DELETED, or CARD_UPDATED with the reissued card's expiry and/or "
        "last digits. Sends a `network_token.updated` webhook. An event that does not fit the token's "
        "status answers 422 lifecycleTransitionNotAllowed. Answers endpointNotFound where the simulator "
        "endpoints are switched off.",
        request=s.SimulateLifecycleInput,
        responses={
            200: s.NetworkTokenOutput,
            404: OpenApiResponse(ErrorOutput, description="resourceNotFound, or endpointNotFound when switched off"),
            **{code: ERRORS[code] for code in (400, 401, 403, 415, 422)},
        },
    )
    def post(self, request, token_id):
        token = selectors.network_token_get(merchant=request.user, token_id=token_id)
        data = self.validated(request, s.SimulateLifecycleInput)
        expiry = data.get("cardExpiryDate")
        services.lifecycle_apply(
            token=token,
            type=data["event"],
            source="TSP simulator (API)",
            expiry=(expiry["month"], expiry["year"]) if expiry else None,
            card_last_digits=data.get("cardLastDigits"),
        )
        return network_token_answer(request.user, token_id)
