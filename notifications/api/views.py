"""Webhook endpoints and events for merchants (scope ``webhooks``): thin views over notifications.services."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response

from core.api import ApiView, ErrorOutput, page_of
from core.errors import BodyDoesNotMatchSchema
from core.outbound import UnsafeUrl
from notifications import selectors, services
from notifications.api import serializers as s
from notifications.api.representations import endpoint_body, event_body, secret_rotated_body

ERRORS = {
    400: OpenApiResponse(
        ErrorOutput, description="bodyDoesNotMatchSchema (a refused URL: fieldHasInvalidValue at $.url)"
    ),
    401: OpenApiResponse(ErrorOutput, description="accessDenied: no or unknown API key"),
    403: OpenApiResponse(ErrorOutput, description="accessDenied: the key lacks the webhooks scope"),
    404: OpenApiResponse(ErrorOutput, description="resourceNotFound"),
}
READ_ERRORS = {code: ERRORS[code] for code in (401, 403, 404)}


def _url_refused(exc: UnsafeUrl) -> BodyDoesNotMatchSchema:
    return BodyDoesNotMatchSchema(
        validation_errors=[{"errorName": "fieldHasInvalidValue", "message": str(exc), "jsonPath": "$.url"}]
    )


class EndpointsView(ApiView):
    required_scope = "webhooks"

    @extend_schema(
        operation_id="webhook_endpoints_list",
        summary="Your webhook endpoints",
        responses={200: s.EndpointListOutput, **READ_ERRORS},
    )
    def get(self, request):
        endpoints = selectors.endpoint_list(merchant=request.user)
        return Response({"_embedded": {"webhookEndpoints": [endpoint_body(e) for e in endpoints]}})

    @extend_schema(
        operation_id="webhook_endpoints_create",
        summary="Add a webhook endpoint",
        description="The answer holds the signing secret, shown this once. URLs reaching private, loopback, "
        "link-local, CGNAT, multicast or metadata addresses are refused, and so are ports below 1024 other than 80 "
        "and 443, and anything but printable ASCII.",
        request=s.EndpointCreateInput,
        responses={201: s.EndpointCreatedOutput, **ERRORS},
    )
    def post(self, request):
        data = self.validated(request, s.EndpointCreateInput)
        try:
            endpoint = services.endpoint_create(
                merchant=request.user,
                url=data["url"],
                event_types=data.get("eventTypes"),
                description=data.get("description", ""),
            )
        except UnsafeUrl as exc:
            raise _url_refused(exc) from None
        return Response({**endpoint_body(endpoint), "secret": endpoint.secret}, status=status.HTTP_201_CREATED)


class EndpointView(ApiView):
    required_scope = "webhooks"

    @extend_schema(
        operation_id="webhook_endpoint_get",
        summary="A webhook endpoint",
        responses={200: s.EndpointOutput, **READ_ERRORS},
    )
    def get(self, request, public_id):
        return Response(endpoint_body(selectors.endpoint_get(merchant=request.user, public_id=public_id)))

    @extend_schema(
        operation_id="webhook_endpoint_update",
        summary="Change a webhook endpoint",
        description="`enabled: true` re-enables a disabled endpoint and clears its failure streak.",
        request=s.EndpointUpdateInput,
        responses={200: s.EndpointOutput, **ERRORS},
    )
    def patch(self, request, public_id):
        endpoint = selectors.endpoint_get(merchant=request.user, public_id=public_id)
        data = self.validated(request, s.EndpointUpdateInput)
        names = {"url": "url", "eventTypes": "event_types", "description": "description", "enabled": "enabled"}
        try:
            endpoint = services.endpoint_update(endpoint=endpoint, **{names[key]: value for key, value in data.items()})
        except UnsafeUrl as exc:
            raise _url_refused(exc) from None
        return Response(endpoint_body(endpoint))

    @extend_schema(
        operation_id="webhook_endpoint_delete",
        summary="Remove a webhook endpoint",
        responses={204: None, **READ_ERRORS},
    )
    def delete(self, request, public_id):
        services.endpoint_delete(endpoint=selectors.endpoint_get(merchant=request.user, public_id=public_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotateSecretView(ApiView):
    required_scope = "webhooks"

    @extend_schema(
        operation_id="webhook_endpoint_rotate_secret",
        summary="A new signing secret",
        description="Both secrets sign every delivery for the next 24 hours.",
        request=None,
        responses={200: s.SecretRotatedOutput, **READ_ERRORS},
    )
    def post(self, request, public_id):
        endpoint = selectors.endpoint_get(merchant=request.user, public_id=public_id)
        endpoint = services.endpoint_rotate_secret(endpoint=endpoint)
        return Response(secret_rotated_body(endpoint))


class EventsView(ApiView):
    required_scope = "webhooks"

    @extend_schema(
        operation_id="events_list",
        summary="Your events, newest first, with their delivery status",
        parameters=[s.EventQueryInput],
        responses={200: s.EventListOutput, **READ_ERRORS, 400: ERRORS[400]},
    )
    def get(self, request):
        query = s.EventQueryInput(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        events = selectors.event_list(merchant=request.user, type=params.get("type"))
        items, page = page_of(events, number=params["page"], size=params["pageSize"])
        return Response({"_embedded": {"events": [event_body(event) for event in items]}, "page": page})


class EventView(ApiView):
    required_scope = "webhooks"

    @extend_schema(
        operation_id="event_get",
        summary="An event and its delivery to each endpoint",
        responses={200: s.EventOutput, **READ_ERRORS},
    )
    def get(self, request, public_id):
        return Response(event_body(selectors.event_get(merchant=request.user, public_id=public_id)))


class EventRedeliverView(ApiView):
    required_scope = "webhooks"

    @extend_schema(
        operation_id="event_redeliver",
        summary="Send an event again to your endpoints",
        request=None,
        responses={202: s.RedeliverOutput, **READ_ERRORS},
    )
    def post(self, request, public_id):
        event = selectors.event_get(merchant=request.user, public_id=public_id)
        return Response({"deliveries": services.event_redeliver(event=event)}, status=status.HTTP_202_ACCEPTED)
