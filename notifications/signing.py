"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``.

The key is the base64 part of the endpoint's ``whsec_…`` secret. During a secret rotation both the new and the
previous secret sign, space-separated, so a receiver verifying with either one accepts the message.
"""

import base64
import hashlib
import hmac


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def headers(*, secrets: list[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            sign(secret=secret, message_id=message_id, timestamp=timestamp, body=body) for secret in secrets
        ),
    }
