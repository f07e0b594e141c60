"""Card capture in the browser: capture sessions for merchants (``/capture-sessions``, scope ``tokens``) and the card
the vault's frame posts (``/capture/{id}/card``, authenticated by the session's client secret); thin views over
``vault.capture``. The frame's page itself (``/capture/{id}``, name ``capture-frame``) is served with the pages."""

from django.urls import reverse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from core import idempotency
from core.api import ApiView, ErrorOutput
from core.errors import BodyDoesNotMatchSchema
from core.http import timestamp
from merchants.authentication import client_origin
from vault import capture, services
from vault.api import capture_serializers as s
from vault.api.representations import masked_card, token_href
from vault.api.views import ERRORS as TOKEN_ERRORS
from vault.capture.throttling import CaptureClientThrottle, CaptureRateThrottle
from vault.models import CaptureSession

# Where each value a service refuses sits in the request's body.
SESSION_PATHS = {"origin": "$.origin", "namespace": "$.namespace", "description": "$.description"}
CARD_PATHS = {
    "card_number": "$.cardNumber",
    "holder_name": "$.cardHolderName",
    "expiry_month": "$.cardExpiryDate.month",
    "expiry_year": "$.cardExpiryDate.year",
    "expiry": "$.cardExpiryDate",
}
# As POST /tokens answers each outcome.
STATUS_OF = {
    services.Outcome.CREATED: status.HTTP_201_CREATED,
    services.Outcome.MATCHED: status.HTTP_200_OK,
    services.Outcome.CONFLICT: status.HTTP_409_CONFLICT,
}


def _refused(refused: capture.ValuesRefused, paths: dict[str, str]) -> BodyDoesNotMatchSchema:
    return BodyDoesNotMatchSchema(
        validation_errors=[
            {"errorName": broken.name, "message": broken.message, "jsonPath": paths[name]}
            for name, broken in refused.problems
        ]
    )


def session_body(request, session: CaptureSession) -> dict:
    """A session as the merchant sees it (``CaptureSessionOutput``): never its secret, nothing of its card but the
    token's ids."""
    body = {
        "id": session.public_id,
        "url": request.build_absolute_uri(reverse("capture-frame", args=[session.public_id])),
        "origin": session.origin,
        "namespace": session.namespace,
        "description": session.description,
        "status": session.status(),
        "failedSubmissions": session.failed_submissions,
        "createdAt": timestamp(session.created_at),
        "expiresAt": timestamp(session.expires_at),
    }
    if session.is_completed:
        body["completedAt"] = timestamp(session.completed_at)
        body["tokenId"] = session.token.token_id
        body["href"] = token_href(request, session.token)
        body["outcome"] = session.outcome
    return body


class CaptureSessionsView(ApiView):
    """``POST /capture-sessions``: the merchant's server opens a session for its page."""

    required_scope = "tokens"

    @extend_schema(
        operation_id="capture_sessions_create",
        summary="Open a capture session: one card typed in a shopper's browser, straight into the vault",
        description="Give the answer's `id` and `clientSecret` to the page of `origin`, which shows the card form "
        "with `VaultCapture.mount(element, {session: id, clientSecret})` (`/capture.js`). The session takes one card, "
        "for 15 minutes, and at most 5 failed submissions; the card is tokenized as POST /tokens would, in "
        "`namespace`, with `description`. Its outcome is in GET /capture-sessions/{id} and in the `token.created` "
        "webhook. The origin is https (http only for localhost and 127.0.0.1 where loopback is allowed), with a "
        "host and an optional port: no path, query, fragment or user (400 fieldHasInvalidValue at $.origin).",
        request=s.CaptureSessionCreateInput,
        responses={
            201: OpenApiResponse(s.CaptureSessionCreatedOutput, description="Created: the only answer with the secret"),
            **{code: TOKEN_ERRORS[code] for code in (400, 401, 403, 415)},
        },
    )
    def post(self, request):
        data = self.validated(request, s.CaptureSessionCreateInput)
        try:
            session, client_secret = capture.capture_session_create(
                merchant=request.user,
                origin=data["origin"],
                namespace=data.get("namespace"),
                description=data.get("description"),
            )
        except capture.ValuesRefused as refused:
            raise _refused(refused, SESSION_PATHS) from None
        response = Response(
            {**session_body(request, session), "clientSecret": client_secret}, status=status.HTTP_201_CREATED
        )
        response["Cache-Control"] = "no-store"  # the secret
        return response


class CaptureSessionView(ApiView):
    """``GET /capture-sessions/{id}``: what became of a session."""

    required_scope = "tokens"

    @extend_schema(
        operation_id="capture_session_get",
        summary="A capture session and, once completed, its token",
        description="Never its client secret. `status` is `open`, `completed` (with `completedAt`, `tokenId`, `href` "
        "and `outcome`), `locked` (5 failed submissions) or `expired`.",
        responses={200: s.CaptureSessionOutput, **{code: TOKEN_ERRORS[code] for code in (401, 403, 404)}},
    )
    def get(self, request, public_id):
        session = capture.capture_session_of(merchant=request.user, public_id=public_id)
        return Response(session_body(request, session))


class SessionInThePath(BaseAuthentication):
    """Whose request it is: the merchant of the capture session its path names (``request.user``, the session being
    ``request.auth``), for what the API keeps per merchant: the Idempotency-Key's keys, the rate limits
    (``vault.capture.throttling``). It proves nothing: the session's client secret does, checked by
    ``capture_session_submit`` under the session's lock, where a wrong one counts. An unknown session is no one's."""

    def authenticate(self, request):
        session = capture.capture_session_get(public_id=request.parser_context["kwargs"]["public_id"])
        return None if session is None else (session.merchant, session)


class CaptureCardSchema(AutoSchema):
    """The card's operation, its headers marked optional in so many words (``"required": false``), as
    ``core.schema.idempotency_in_schema`` writes the Idempotency-Key of the calls with an API key: drf-spectacular
    leaves out what is false by default."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        for parameter in (operation or {}).get("parameters", []):
            if parameter["in"] == "header":
                parameter.setdefault("required", False)
        return operation


class CaptureCardView(ApiView):
    """The card the vault's frame posts: no API key (a page holds none), the session's client secret instead; the
    session's rate limits (``vault.capture.throttling``) and, as every POST, ``Idempotency-Key`` (the frame may
    resend a card whose answer it lost, and gets that answer rather than ``captureSessionCompleted``)."""

    authentication_classes = [SessionInThePath]
    schema = CaptureCardSchema()
    permission_classes = [AllowAny]
    throttle_classes = [CaptureRateThrottle, CaptureClientThrottle]

    @extend_schema(
        operation_id="capture_card_submit",
        summary="Tokenize the card typed in a capture session's form (called by the vault's frame)",
        description="Authenticated by the session's `clientSecret`, not an API key. The card is tokenized by the "
        "rules of POST /tokens, for the session's merchant, in its namespace: 201, 200 or 409 as POST /tokens "
        "answers, with the token and the masked card. A wrong secret and a refused card each count as a failed "
        "submission; the 5th locks the session.",
        auth=[],
        request=s.CaptureCardInput,
        parameters=[
            # As core.schema.idempotency_in_schema documents it for the calls with an API key.
            OpenApiParameter(
                idempotency.HEADER,
                {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": idempotency.KEY_MAX_LENGTH,
                    "pattern": idempotency.KEY_PATTERN,
                },
                OpenApiParameter.HEADER,
                description="Your unique key for this submission, kept 24 hours with the session's merchant: the same "
                "submission sent again with it gets the first answer back (with "
                f"`{idempotency.REPLAYED_HEADER}: true`) and is not done again; another submission with the same key "
                "is 422 `idempotencyKeyReused`, a repeat while the first is being served 409 `requestInProgress`.",
            ),
            OpenApiParameter(
                "Retry-After",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                response=[429],
                description="Seconds to wait before the next submission may be served",
            ),
        ],
        responses={
            201: OpenApiResponse(s.CaptureTokenOutput, description="Created: the first time this card is tokenized"),
            200: OpenApiResponse(
                s.CaptureTokenOutput, description="OK: the card is already tokenized with the same details"
            ),
            409: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="CaptureCardConflictOutput",
                    serializers=[s.CaptureTokenOutput, ErrorOutput],
                    resource_type_field_name=None,
                ),
                description="Conflict: the card is already tokenized with other details, kept as they are (the "
                "token); or captureSessionCompleted: the session has its card already, or requestInProgress: the "
                "submission first sent with this Idempotency-Key is still being served (the error)",
            ),
            400: OpenApiResponse(
                ErrorOutput,
                description="bodyDoesNotMatchSchema (the card rules of POST /tokens: a failed submission; or a "
                "malformed Idempotency-Key), bodyIsNotJson, bodyIsEmpty, or a business rule of POST /tokens "
                "(namespaceCardLimitReached)",
            ),
            401: OpenApiResponse(ErrorOutput, description="accessDenied: a wrong or missing client secret"),
            403: OpenApiResponse(ErrorOutput, description="captureSessionLocked: 5 failed submissions"),
            404: OpenApiResponse(ErrorOutput, description="resourceNotFound: no such capture session"),
            410: OpenApiResponse(ErrorOutput, description="captureSessionExpired"),
            422: OpenApiResponse(
                ErrorOutput, description="idempotencyKeyReused: this Idempotency-Key was sent with another submission"
            ),
            415: TOKEN_ERRORS[415],
            429: OpenApiResponse(
                ErrorOutput,
                description="tooManyRequests: over the session's merchant's limit, or the client's (Retry-After)",
            ),
            503: TOKEN_ERRORS[503],
        },
    )
    def post(self, request, public_id):
        data = self.validated(request, s.CaptureCardInput)
        expiry = data["cardExpiryDate"]
        try:
            result = capture.capture_session_submit(
                public_id=public_id,
                client_secret=data.get("clientSecret"),
                card_number=data["cardNumber"],
                holder_name=data["cardHolderName"],
                expiry_month=expiry["month"],
                expiry_year=expiry["year"],
                client_address=client_origin(request),
            )
        except capture.ValuesRefused as refused:
            raise _refused(refused, CARD_PATHS) from None
        token = result.token
        body = {
            "type": "vault.token",
            "tokenId": token.token_id,
            "href": token_href(request, token),
            "outcome": result.outcome.value,
            "paymentInstrument": masked_card(token),
        }
        return Response(body, status=STATUS_OF[result.outcome])
