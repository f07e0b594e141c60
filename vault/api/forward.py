"""``POST /forward`` (scope ``forwarding``): a thin view over ``vault.forwarding.sending.card_forward``."""

import logging

from django.db import DatabaseError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response

from core.api import ApiView, ErrorOutput
from core.errors import DestinationUnavailable
from merchants.authentication import actor_for, attempt_actor
from vault.api import forward_serializers as s
from vault.api.representations import forward_answer_body
from vault.api.views import ERRORS as TOKEN_ERRORS
from vault.forwarding.sending import card_forward, card_forward_refused

logger = logging.getLogger(__name__)

ERRORS = {
    400: OpenApiResponse(
        ErrorOutput,
        description="bodyDoesNotMatchSchema: a field, or an expression that is malformed (expressionIsMalformed), "
        "unknown (expressionIsUnknown), names a credential the destination lacks (credentialIsUnknown) or a network "
        "token the request does not (networkTokenIsMissing), a header value that is no header value once filled in "
        "(headerValueIsInvalid), a path leaving the destination's URL (pathOutsideDestination); each at its "
        "jsonPath ($.body, $.path, $.headers.<name>). Nothing was sent. Also bodyIsNotJson, bodyIsEmpty",
    ),
    401: OpenApiResponse(ErrorOutput, description="accessDenied: no or unknown API key"),
    403: OpenApiResponse(ErrorOutput, description="accessDenied: the key lacks the forwarding scope"),
    404: OpenApiResponse(
        ErrorOutput, description="resourceNotFound: no such destination, token or network token of yours"
    ),
    415: TOKEN_ERRORS[415],
    422: OpenApiResponse(
        ErrorOutput,
        description="destinationDisabled: staff disabled the destination; tokenNotActive: the network token is not "
        "ACTIVE. Nothing was sent.",
    ),
    502: OpenApiResponse(
        ErrorOutput,
        description="destinationUnavailable: the destination refused the connection, could not be reached or failed "
        "TLS; networkUnavailable: the card network's token service failed (no cryptogram, nothing sent)",
    ),
    503: TOKEN_ERRORS[503],
    504: OpenApiResponse(
        ErrorOutput, description="destinationUnavailable: the destination did not answer within 30 seconds"
    ),
}


class ForwardView(ApiView):
    required_scope = "forwarding"
    releases_card_data = True  # to the destination: the card-data rate limit counts it

    @extend_schema(
        operation_id="forward",
        summary="Send a request to one of your destinations with the card filled in by the vault",
        description="The vault fills the expressions of `path`, `headers` and `body` in, sends the request to the "
        "destination (under its URL; no redirects followed, 30 s at most) and answers what the destination "
        "answered, with this card's number, its network token's number and any other card number masked. Audited, "
        "and a use of the token (in live, its expiry may move on). Rate-limited like detokenize. A repeat with the "
        "same `Idempotency-Key` is answered without sending again.",
        request=s.ForwardInput,
        responses={200: s.ForwardOutput, **ERRORS},
    )
    def post(self, request):
        data = self.validated(request, s.ForwardInput)
        answer = card_forward(
            merchant=request.user,
            actor=actor_for(request),
            destination_id=data["destination"],
            token=data["token"],
            network_token_id=data.get("networkToken"),
            method=data["method"],
            path=data.get("path", ""),
            headers=data.get("headers") or {},
            body=data.get("body", ""),
        )
        response = Response(forward_answer_body(answer))
        response["Cache-Control"] = "no-store"
        return response

    def handle_exception(self, exc):
        """Every attempt is audited: ``card_forward`` writes the forwards it sent or tried to send (and the network
        token's cryptogram is audited by its own service); any other refusal is written here, once the request's
        transactions are rolled back."""
        response = super().handle_exception(exc)
        if not isinstance(exc, DestinationUnavailable):
            try:
                card_forward_refused(
                    actor=attempt_actor(self.request),
                    reason=response.data["errorName"],
                    status=response.status_code,
                )
            except DatabaseError:
                logger.exception("a refused forward could not be audited")
        return response
