"""The card-token API (``/tokens``): thin views over vault.services and vault.selectors."""

import logging
from urllib.parse import urlencode

from django.db import DatabaseError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ApiView, ErrorOutput, StringField, page_of
from core.errors import ResourceNotFound
from core.http import HalJsonRenderer, JsonRenderer, timestamp
from core.schema import string_schema
from merchants.authentication import actor_for, attempt_actor
from vault import selectors, services
from vault.api import relations
from vault.api import serializers as s
from vault.api.representations import base_url, conflicts_body, curies, masked_card, token_body
from vault.crypto import KeysUnavailable
from vault.services.tokens import token_detokenize_refused

logger = logging.getLogger(__name__)

ERRORS = {
    400: OpenApiResponse(
        ErrorOutput, description="bodyDoesNotMatchSchema, bodyIsNotJson, bodyIsEmpty or a business rule"
    ),
    401: OpenApiResponse(ErrorOutput, description="accessDenied: no or unknown API key"),
    403: OpenApiResponse(ErrorOutput, description="accessDenied: the key lacks the scope"),
    404: OpenApiResponse(ErrorOutput, description="resourceNotFound"),
    415: OpenApiResponse(ErrorOutput, description="unsupportedContentType"),
    503: OpenApiResponse(
        ErrorOutput,
        description="keysNotReady: this server's vault keys do not match the stored cards (an operator must fix "
        "them); serviceUnavailable: the database, or the key the card was stored under, is not available "
        "on this server. Retry after `Retry-After` seconds.",
    ),
}
READ_ERRORS = {code: ERRORS[code] for code in (401, 403, 404)}


class TokensView(ApiView):
    required_scope = "tokens"

    @extend_schema(
        operation_id="tokens_root_or_query",
        summary="The tokens root resource, or tokens by namespace or tokenId",
        description=(
            "Without parameters: the root resource with the `tokens:tokens` action link. With `namespace`: that "
            "namespace's tokens, paginated, in `_embedded.tokens`. With `tokenId`: that token."
        ),
        parameters=[s.TokenQueryInput],
        responses={
            200: PolymorphicProxySerializer(
                component_name="TokensRootOrQueryOutput",
                serializers=[s.RootOutput, s.TokenListOutput, s.TokenOutput],
                resource_type_field_name=None,
            ),
            **READ_ERRORS,
            400: ERRORS[400],
        },
    )
    def get(self, request):
        query = s.TokenQueryInput(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        if "tokenId" in params:
            token = selectors.token_get(merchant=request.user, token_id=params["tokenId"])
            return Response(token_body(request, token, conflict=selectors.conflict_pending(token=token)))
        if "namespace" in params:
            return Response(self._page(request, params))
        return Response(
            {"_links": {relations.rel("tokens"): {"href": f"{base_url(request)}/tokens"}, "curies": curies(request)}}
        )

    def _page(self, request, params) -> dict:
        tokens = selectors.token_list(merchant=request.user, namespace=params["namespace"])
        size, number = params["pageSize"], params["page"]
        items, page = page_of(tokens, number=number, size=size)

        def href(at: int) -> str:
            # Encoded: a namespace is any text ("&", "#", spaces, control characters), a link must be a URI.
            query = urlencode({"namespace": params["namespace"], "pageSize": size, "page": at})
            return f"{base_url(request)}/tokens?{query}"

        links = {"self": {"href": href(number)}}
        if number < page["totalPages"]:
            links["next"] = {"href": href(number + 1)}
        if number > 1:
            links["prev"] = {"href": href(number - 1)}
        links["curies"] = curies(request)
        return {
            "_embedded": {"tokens": [token_body(request, token) for token in items]},
            "page": page,
            "_links": links,
        }

    @extend_schema(
        operation_id="tokens_create",
        summary="Create a token",
        request=s.TokenCreateInput,
        responses={
            201: OpenApiResponse(s.TokenOutput, description="Created: the first time this card is tokenized"),
            200: OpenApiResponse(s.TokenOutput, description="OK: the card is already tokenized with matching data"),
            409: OpenApiResponse(
                s.TokenOutput, description="Conflict: stored data kept, differing data in `conflicts`"
            ),
            **{code: ERRORS[code] for code in (400, 401, 403, 415, 503)},
        },
    )
    def post(self, request):
        data = self.validated(request, s.TokenCreateInput)
        instrument = data["paymentInstrument"]
        result = services.card_tokenize(
            merchant=request.user,
            card=services.Card(
                number=instrument["cardNumber"],
                holder_name=instrument["cardHolderName"],
                expiry_month=instrument["cardExpiryDate"]["month"],
                expiry_year=instrument["cardExpiryDate"]["year"],
                billing_address=instrument.get("billingAddress"),
            ),
            description=data.get("description"),
            namespace=data.get("namespace"),
            expires_at=data.get("tokenExpiryDateTime"),
            scheme_transaction_reference=data.get("schemeTransactionReference"),
        )
        code = {
            services.Outcome.CREATED: status.HTTP_201_CREATED,
            services.Outcome.MATCHED: status.HTTP_200_OK,
            services.Outcome.CONFLICT: status.HTTP_409_CONFLICT,
        }[result.outcome]
        conflict = result.conflict if result.outcome == services.Outcome.CONFLICT else None
        if result.outcome == services.Outcome.MATCHED:
            conflict = selectors.conflict_pending(token=result.token)
        return Response(token_body(request, result.token, conflict=conflict), status=code)


class TokenView(ApiView):
    required_scope = "tokens"

    @extend_schema(operation_id="token_get", summary="Get a token", responses={200: s.TokenOutput, **READ_ERRORS})
    def get(self, request, reference):
        token = selectors.token_get(merchant=request.user, reference=reference)
        return Response(token_body(request, token, conflict=selectors.conflict_pending(token=token)))

    @extend_schema(
        operation_id="token_delete",
        summary="Delete a token",
        description="Destroys the card data; the href answers 404 afterwards. A masked tombstone remains for audit.",
        responses={204: None, **READ_ERRORS},
    )
    def delete(self, request, reference):
        token = selectors.token_get(merchant=request.user, reference=reference)
        services.token_delete(token=token, actor=actor_for(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


UPDATE_ERRORS = {code: ERRORS[code] for code in (400, 401, 403, 404, 415)}


class TokenDetailUpdateView(ApiView):
    """``PUT {href}/<detail>``: one detail of the token replaced; answers 204."""

    required_scope = "tokens"

    def put(self, request, reference):
        token = selectors.token_get(merchant=request.user, reference=reference)
        services.token_update(token=token, **self.changes(self.parse(request)))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def parse(self, request):
        raise NotImplementedError

    def changes(self, value) -> dict:
        raise NotImplementedError


class BareStringUpdateView(TokenDetailUpdateView):
    """The body is one JSON string; its errors point at ``$``."""

    field_class = StringField
    detail = ""

    def parse(self, request):
        return self.field_class().run_validation(self.read_body(request))

    def changes(self, value):
        return {self.detail: value}


def _bare_string_view(name, detail, field_class, summary, *, segment):
    def put(self, request, reference):
        return BareStringUpdateView.put(self, request, reference)

    put = extend_schema(
        operation_id=f"token_update_{segment}",
        summary=summary,
        # By media type: a bare dict would be read as that mapping.
        request={parser.media_type: string_schema(field_class()) for parser in BareStringUpdateView.parser_classes},
        responses={204: None, **UPDATE_ERRORS},
    )(put)
    return type(name, (BareStringUpdateView,), {"field_class": field_class, "detail": detail, "put": put})


TokenDescriptionView = _bare_string_view(
    "TokenDescriptionView",
    "description",
    s.DescriptionField,
    "Update the description (a bare JSON string)",
    segment="description",
)
TokenCardHolderNameView = _bare_string_view(
    "TokenCardHolderNameView",
    "card_holder_name",
    s.CardHolderNameField,
    "Update the card holder name (a bare JSON string)",
    segment="cardHolderName",
)
TokenSchemeTransactionReferenceView = _bare_string_view(
    "TokenSchemeTransactionReferenceView",
    "scheme_transaction_reference",
    s.SchemeTransactionReferenceField,
    "Update the scheme transaction reference (a bare JSON string)",
    segment="schemeTransactionReference",
)


class TokenCardExpiryDateView(TokenDetailUpdateView):
    @extend_schema(
        operation_id="token_update_cardExpiryDate",
        summary="Update the card expiry date",
        request=s.CardExpiryDateInput,
        responses={204: None, **UPDATE_ERRORS},
    )
    def put(self, request, reference):
        return super().put(request, reference)

    def parse(self, request):
        return self.validated(request, s.CardExpiryDateInput)

    def changes(self, value):
        return {"expiry": (value["month"], value["year"])}


class TokenBillingAddressView(TokenDetailUpdateView):
    @extend_schema(
        operation_id="token_update_billingAddress",
        summary="Update the billing address",
        request=s.BillingAddressInput,
        responses={204: None, **UPDATE_ERRORS},
    )
    def put(self, request, reference):
        return super().put(request, reference)

    def parse(self, request):
        return self.validated(request, s.BillingAddressInput)

    def changes(self, value):
        return {"billing_address": dict(value)}


class TokenConflictsView(ApiView):
    required_scope = "tokens"

    @extend_schema(
        operation_id="token_conflicts_get",
        summary="The stored data and the pending conflicting data",
        responses={200: s.TokenConflictsOutput, **READ_ERRORS},
    )
    def get(self, request, reference):
        token = selectors.token_get(merchant=request.user, reference=reference)
        conflict = selectors.conflict_pending(token=token)
        if conflict is None:
            raise ResourceNotFound("The token has no pending conflict")
        body = token_body(request, token, conflict=conflict)
        return Response(
            {
                "tokenId": token.token_id,
                "paymentInstrument": masked_card(token),
                "conflicts": conflicts_body(conflict),
                "_links": body["_links"],
            }
        )

    @extend_schema(
        operation_id="token_conflicts_apply",
        summary="Apply the pending conflicting data to the token",
        request=None,
        responses={204: None, **READ_ERRORS},
    )
    def put(self, request, reference):
        token = selectors.token_get(merchant=request.user, reference=reference)
        services.conflict_apply(token=token, actor=actor_for(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# Why a detokenize attempt released nothing, by its answer's status; any other answer's reason is its error name.
DETOKENIZE_REFUSALS = {
    401: "no valid API key",
    403: "the key lacks the tokens:detokenize scope",
    404: "no such token for this merchant",
    429: "rate limited",
}


class TokenDetokenizeView(ApiView):
    required_scope = "tokens:detokenize"
    releases_card_data = True

    @extend_schema(
        operation_id="token_detokenize",
        summary="The full card, for payment processing (scope tokens:detokenize)",
        description="Audited. Counts as a use of the token: in live, with less than half of its own lifetime "
        "left (creation to current expiry), its expiry moves 4 years on; in try, never.",
        request=None,
        responses={200: s.DetokenizeOutput, **READ_ERRORS, 503: ERRORS[503]},
    )
    def post(self, request, reference):
        token = selectors.token_get(merchant=request.user, reference=reference)
        token, number = services.token_detokenize(token=token, actor=actor_for(request))
        card = {
            "type": "card/plain",
            "cardNumber": number,
            "cardHolderName": token.card_holder_name,
            "cardExpiryDate": {"month": token.expiry_month, "year": token.expiry_year},
        }
        if token.billing_address:
            card["billingAddress"] = token.billing_address
        response = Response(
            {
                "tokenId": token.token_id,
                "tokenExpiryDateTime": timestamp(token.expires_at),
                "paymentInstrument": card,
            }
        )
        response["Cache-Control"] = "no-store"
        return response

    def handle_exception(self, exc):
        """Every attempt is audited: ``token_detokenize`` writes the card released (with the use, in its transaction)
        and the keys failing it; any other failure is written here, once the request's transactions are rolled back.
        """
        response = super().handle_exception(exc)
        if not isinstance(exc, KeysUnavailable):
            try:
                token_detokenize_refused(
                    actor=attempt_actor(self.request),
                    reference=self.kwargs["reference"],
                    reason=DETOKENIZE_REFUSALS.get(response.status_code) or response.data["errorName"],
                    status=response.status_code,
                )
            except DatabaseError:
                logger.exception("a failed detokenize attempt could not be audited")
        return response


class RelationView(APIView):
    """``GET /rels/tokens/{rel}.json``: what the link relation ``tokens:{rel}`` of a token answer leads to, and how to
    use it (``relations``); where the ``curies`` of every answer point.

    Public, like ``/api/docs/``: it documents the API and holds nothing of any merchant, so it takes no API key (a
    client following a curie need not send one; one sent is ignored).
    """

    authentication_classes = []
    permission_classes = [AllowAny]
    renderer_classes = [JsonRenderer]

    @extend_schema(
        operation_id="token_relation_get",
        summary="The documentation of a link relation (what the curies resolve to)",
        description="Public: no API key needed. `rel` is a link relation's name without its `tokens:` prefix.",
        auth=[],
        parameters=[
            OpenApiParameter(
                "rel",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                enum=sorted(relations.RELATIONS),
                pattern=f"^{relations.NAME_REGEX}$",
                description="The relation, e.g. conflicts for tokens:conflicts; any other name answers 404.",
            )
        ],
        responses={
            200: s.RelationOutput,
            # A name outside the path's pattern never reaches this view: the API's catch-all answers it, in HAL JSON.
            (404, JsonRenderer.media_type, HalJsonRenderer.media_type): OpenApiResponse(
                ErrorOutput, description="resourceNotFound: no such relation (endpointNotFound outside the pattern)"
            ),
        },
    )
    def get(self, request, rel):
        return Response(relations.relation_document(name=rel))
