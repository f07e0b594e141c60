"""Forward destinations for merchants (``/forward-destinations``, scope ``forwarding``): thin views over
``vault.forwarding``."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response

from core.api import ApiView, ErrorOutput, page_of
from core.errors import BodyDoesNotMatchSchema
from core.outbound import UnsafeUrl
from merchants.authentication import actor_for
from vault import forwarding
from vault.api import destination_serializers as s
from vault.api.representations import destination_body
from vault.api.views import ERRORS as TOKEN_ERRORS

ERRORS = {
    400: OpenApiResponse(
        ErrorOutput,
        description="bodyDoesNotMatchSchema (a refused URL: fieldHasInvalidValue at $.url), bodyIsNotJson, bodyIsEmpty",
    ),
    401: OpenApiResponse(ErrorOutput, description="accessDenied: no or unknown API key"),
    403: OpenApiResponse(ErrorOutput, description="accessDenied: the key lacks the forwarding scope"),
    404: OpenApiResponse(ErrorOutput, description="resourceNotFound"),
    415: TOKEN_ERRORS[415],
    503: TOKEN_ERRORS[503],
}
READ_ERRORS = {code: ERRORS[code] for code in (401, 403, 404, 503)}
URL_RULES = (
    "The URL is an https origin with an optional path prefix (no query or fragment); forwards go under it and "
    "nowhere else. URLs reaching private, loopback, link-local, CGNAT, multicast or metadata addresses are refused, "
    "and so are ports below 1024 other than 80 and 443, and anything but printable ASCII."
)


def _url_refused(exc: UnsafeUrl) -> BodyDoesNotMatchSchema:
    return BodyDoesNotMatchSchema(
        validation_errors=[{"errorName": "fieldHasInvalidValue", "message": str(exc), "jsonPath": "$.url"}]
    )


def _body(destination) -> dict:
    return destination_body(destination, credential_names=forwarding.destination_credential_names(destination))


class DestinationsView(ApiView):
    required_scope = "forwarding"

    @extend_schema(
        operation_id="forward_destinations_list",
        summary="Your forward destinations, newest first",
        parameters=[s.DestinationQueryInput],
        responses={200: s.DestinationListOutput, **READ_ERRORS, 400: ERRORS[400]},
    )
    def get(self, request):
        query = s.DestinationQueryInput(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        destinations = forwarding.destination_list(merchant=request.user)
        items, page = page_of(destinations, number=params["page"], size=params["pageSize"])
        return Response({"_embedded": {"forwardDestinations": [_body(d) for d in items]}, "page": page})

    @extend_schema(
        operation_id="forward_destinations_create",
        summary="Register a forward destination",
        description=f"{URL_RULES} Credentials are stored encrypted and never shown again: answers name them only.",
        request=s.DestinationCreateInput,
        responses={201: s.DestinationOutput, **ERRORS},
    )
    def post(self, request):
        data = self.validated(request, s.DestinationCreateInput)
        try:
            destination = forwarding.destination_create(
                merchant=request.user,
                name=data["name"],
                url=data["url"],
                description=data.get("description", ""),
                credentials=data.get("credentials"),
                actor=actor_for(request),
            )
        except UnsafeUrl as exc:
            raise _url_refused(exc) from None
        return Response(_body(destination), status=status.HTTP_201_CREATED)


class DestinationView(ApiView):
    required_scope = "forwarding"

    @extend_schema(
        operation_id="forward_destination_get",
        summary="A forward destination",
        responses={200: s.DestinationOutput, **READ_ERRORS},
    )
    def get(self, request, public_id):
        return Response(_body(forwarding.destination_get(merchant=request.user, public_id=public_id)))

    @extend_schema(
        operation_id="forward_destination_update",
        summary="Change a forward destination",
        description=f"Only the fields sent change; `credentials` replaces every stored credential. {URL_RULES}",
        request=s.DestinationUpdateInput,
        responses={200: s.DestinationOutput, **ERRORS},
    )
    def patch(self, request, public_id):
        destination = forwarding.destination_get(merchant=request.user, public_id=public_id)
        data = self.validated(request, s.DestinationUpdateInput)
        try:
            destination = forwarding.destination_update(destination=destination, actor=actor_for(request), **data)
        except UnsafeUrl as exc:
            raise _url_refused(exc) from None
        return Response(_body(destination))

    @extend_schema(
        operation_id="forward_destination_delete",
        summary="Remove a forward destination",
        description="Its credentials are destroyed; the forwards made to it stay in the log.",
        responses={204: None, **{code: ERRORS[code] for code in (401, 403, 404)}},
    )
    def delete(self, request, public_id):
        destination = forwarding.destination_get(merchant=request.user, public_id=public_id)
        forwarding.destination_delete(destination=destination, actor=actor_for(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
