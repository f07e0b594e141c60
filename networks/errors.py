"""What the network-token services raise, and what a failed request or batch item records of it.

A token service that fails is a domain fact (``TspUnavailable``, transient or not), not an HTTP answer: the one
exception handler (``core.errors``) answers it 502, or 504 when it timed out, and the async requests and batch items
retry it while it is transient. ``tsp_unavailable`` is the one translation of a token service's ``tsp.TspError``.
"""

from core.errors import ApiError, BusinessRuleError, NotFound, ResourceNotFound, Unavailable
from networks import tsp


class TspUnavailable(Unavailable):
    """The card network's token service failed or did not answer in time; ``transient`` when trying again may
    succeed."""

    error_name = "networkUnavailable"
    default_message = "The card network's token service is unavailable; try again later"
    timeout_message = "The card network's token service did not answer in time; try again later"


class NetworkNotConfigured(ApiError):
    """The card's network has a token service, but this installation is connected to none (production without a
    real integration in TSP_PROVIDERS, and without TSP_SIMULATOR)."""

    status_code = 503
    error_name = "networkNotConfigured"
    default_message = "No token service is configured for this card's network on this server"


def tsp_unavailable(error: tsp.TspError) -> TspUnavailable:
    """The domain error for a token service's failure (the provisioning call and cryptograms raise it)."""
    return TspUnavailable(transient=error.transient, timed_out=error.timeout)


def network_not_supported() -> BusinessRuleError:
    return BusinessRuleError(
        "networkNotSupported", "Network tokens are available for VISA, MASTERCARD and AMEX cards", status_code=422
    )


def tokenization_declined() -> BusinessRuleError:
    return BusinessRuleError("tokenizationDeclined", "The card issuer declined to tokenize this card", status_code=422)


def token_not_activated() -> BusinessRuleError:
    return BusinessRuleError(
        "tokenNotActivated", "The network deleted the token before it was activated", status_code=422
    )


def email_required() -> ApiError:
    return ApiError(
        validation_errors=[
            {
                "errorName": "fieldIsMissing",
                "message": "American Express cards need an email",
                "jsonPath": "$.email",
            }
        ]
    )


# What a request or a batch item may fail with: a refusal, a vault token gone, or the token service down.
Failure = ApiError | NotFound | TspUnavailable


def failure_of(error: Failure) -> tuple[str, str]:
    """The errorName and message a failed request or batch item records of ``error``, and its
    ``network_token.failed`` webhook carries: the API's name for the error, and its first validation message or its
    message (at most 255 characters)."""
    if isinstance(error, NotFound):
        error = ResourceNotFound(str(error) or None)
    elif isinstance(error, Unavailable):
        error = error.as_api_error()
    message = error.validation_errors[0]["message"] if error.validation_errors else error.message
    return error.error_name, message[:255]
