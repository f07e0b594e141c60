"""Webhook endpoints and events as the API shows them: the single source of this app's answers
(``serializers`` documents the same shapes for the OpenAPI document)."""

from core.http import timestamp


def endpoint_body(endpoint) -> dict:
    return {
        "id": endpoint.public_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "eventTypes": endpoint.event_types,
        "enabled": endpoint.is_enabled,
        "disabledReason": endpoint.disabled_reason or None,
        "failingSince": timestamp(endpoint.failing_since),
        "createdAt": timestamp(endpoint.created_at),
    }


def event_body(event) -> dict:
    return {
        "id": event.public_id,
        "type": event.type,
        "createdAt": timestamp(event.created_at),
        "data": event.data,
        "deliveries": [
            {
                "endpointId": delivery.endpoint.public_id,
                "url": delivery.endpoint.url,
                "status": delivery.status,
                "attempts": delivery.attempt_count,
                "lastStatusCode": delivery.last_status_code,
                "lastError": delivery.last_error or None,
                "nextAttemptAt": timestamp(delivery.next_attempt_at),
                "deliveredAt": timestamp(delivery.delivered_at),
            }
            for delivery in event.deliveries.all()
        ],
    }


def secret_rotated_body(endpoint) -> dict:
    """The new signing secret, shown this once, and when the previous one stops signing."""
    return {"secret": endpoint.secret, "previousSecretExpiresAt": timestamp(endpoint.previous_secret_expires_at)}
