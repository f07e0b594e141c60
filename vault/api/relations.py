"""The link relations of the card-token API, and the documents their curie resolves to.

Every token answer names its links ``tokens:<name>`` and carries the curie ``{base}/rels/tokens/{rel}.json``; a
client that meets a relation it does not know expands the curie and reads what the link leads to, the methods it
takes, the body each takes and what each answers. ``RELATIONS`` is the one list of them: ``representations`` builds
its links from these names, ``views.RelationView`` serves these documents, and each method names the OpenAPI
operation (``/api/schema/``) that says the rest.

A document::

    {"rel": "tokens:cardExpiryDate",
     "description": "The card expiry date of a token ({token href}/cardExpiryDate).",
     "methods": {"PUT": {"description": "…", "operationId": "token_update_cardExpiryDate", "scope": "tokens",
                         "body": {"description": "…", "example": {"month": 5, "year": 2035}},
                         "responses": {"204": "…", "400": "…", "404": "…"}}}}

``body`` is null for a method that takes none; in an example, text in angle brackets stands for a value. Scopes
are those of the API key the call needs.
"""

from core.errors import ResourceNotFound

CURIE_NAME = "tokens"
CURIE_PATH = "/rels/tokens/{rel}.json"
# What the path admits in place of {rel} (any other name than RELATIONS' answers 404 resourceNotFound).
NAME_REGEX = "[A-Za-z0-9_-]{1,64}"

# The token's details a merchant may replace one at a time, each linked as ``{token href}/<name>``, in link order.
TOKEN_DETAILS = ("description", "cardHolderName", "cardExpiryDate", "billingAddress", "schemeTransactionReference")

_NOT_FOUND = "resourceNotFound: no such token for this API key (deleted, expired, or another merchant's)"
_UPDATED = "Replaced; no body"
_BAD_BODY = "bodyDoesNotMatchSchema (bodyIsEmpty, bodyIsNotJson): the body is not as described"

# No answer but detokenize holds a card number, test ones included (the leak scan and the fuzzer hold it to that).
CARD_NUMBER_PLACEHOLDER = "<the card number: 12 to 19 digits>"
ADDRESS_EXAMPLE = {
    "address1": "221B Baker Street",
    "address2": "Marylebone",
    "address3": "Westminster",
    "postalCode": "NW1 6XE",
    "city": "London",
    "state": "Greater London",
    "countryCode": "GB",
}


def _replace(detail: str, *, what: str, body: str, example) -> dict:
    """The one method of a token detail: PUT the new value."""
    return {
        "PUT": {
            "description": f"Replace the {what}.",
            "operationId": f"token_update_{detail}",
            "scope": "tokens",
            "body": {"description": body, "example": example},
            "responses": {"204": _UPDATED, "400": _BAD_BODY, "404": _NOT_FOUND},
        },
    }


RELATIONS: dict[str, dict] = {
    "tokens": {
        "description": "The card tokens of the API key's merchant (the root resource's action link, {base}/tokens).",
        "methods": {
            "POST": {
                "description": "Create a token for a card, or find the token that holds it: 201 the first time, 200 "
                "when every compared value matches, 409 when one differs (the stored data is kept).",
                "operationId": "tokens_create",
                "scope": "tokens",
                "body": {
                    "description": "paymentInstrument (type card/front, cardHolderName, cardNumber, cardExpiryDate, "
                    "billingAddress optional); description, tokenExpiryDateTime, namespace and "
                    "schemeTransactionReference optional.",
                    "example": {
                        "description": "Test Token Description",
                        "paymentInstrument": {
                            "type": "card/front",
                            "cardHolderName": "Sherlock Holmes",
                            "cardNumber": CARD_NUMBER_PLACEHOLDER,
                            "cardExpiryDate": {"month": 5, "year": 2035},
                            "billingAddress": ADDRESS_EXAMPLE,
                        },
                    },
                },
                "responses": {
                    "201": "Created: the token",
                    "200": "The card's token, its data matching",
                    "409": "The card's token, its stored data kept; the differing values in conflicts, with a "
                    "tokens:conflicts link",
                    "400": f"{_BAD_BODY}; namespaceCardLimitReached",
                },
            },
            "GET": {
                "description": "Without parameters the root resource; with ?namespace=N that namespace's tokens, "
                "paginated (page, pageSize); with ?tokenId=T that token.",
                "operationId": "tokens_root_or_query",
                "scope": "tokens",
                "body": None,
                "responses": {"200": "The root, a page of tokens, or the token", "404": _NOT_FOUND},
            },
        },
    },
    "token": {
        "description": "A card token: its masked card, expiry and links (tokenPaymentInstrument.href, to be saved).",
        "methods": {
            "GET": {
                "description": "The token.",
                "operationId": "token_get",
                "scope": "tokens",
                "body": None,
                "responses": {"200": "The token", "404": _NOT_FOUND},
            },
            "DELETE": {
                "description": "Destroy the card data; the token answers 404 from then on.",
                "operationId": "token_delete",
                "scope": "tokens",
                "body": None,
                "responses": {"204": "Deleted; no body", "404": _NOT_FOUND},
            },
        },
    },
    "description": {
        "description": "The description of a token ({token href}/description).",
        "methods": _replace(
            "description",
            what="description",
            body="A JSON string, 1 to 255 characters, without & or <.",
            example="Sherlock's card",
        ),
    },
    "cardHolderName": {
        "description": "The card holder's name on a token ({token href}/cardHolderName).",
        "methods": _replace(
            "cardHolderName",
            what="card holder name",
            body="A JSON string, 1 to 255 characters.",
            example="Sherlock Holmes",
        ),
    },
    "cardExpiryDate": {
        "description": "The card expiry date of a token ({token href}/cardExpiryDate).",
        "methods": _replace(
            "cardExpiryDate",
            what="card expiry date",
            body="An object: month (1 to 12) and year, not in the past.",
            example={"month": 5, "year": 2035},
        ),
    },
    "billingAddress": {
        "description": "The billing address of a token ({token href}/billingAddress).",
        "methods": _replace(
            "billingAddress",
            what="billing address (every line: a line left out is removed)",
            body="An object: address1, postalCode, city, countryCode (ISO 3166-1 alpha-2); "
            "address2, address3 and state optional.",
            example=ADDRESS_EXAMPLE,
        ),
    },
    "schemeTransactionReference": {
        "description": "The scheme transaction reference of a token, which Visa or Mastercard give to track "
        "recurring transactions ({token href}/schemeTransactionReference).",
        "methods": _replace(
            "schemeTransactionReference",
            what="scheme transaction reference",
            body="A JSON string, 1 to 56 letters, digits or spaces.",
            example="MCC123456789",
        ),
    },
    "conflicts": {
        "description": "The pending conflict of a token: the values of a create request that differed from the "
        "stored ones ({token href}/conflicts). Present while the conflict is pending, until "
        "conflictsExpiryDateTime.",
        "methods": {
            "GET": {
                "description": "The stored data and the pending conflicting data.",
                "operationId": "token_conflicts_get",
                "scope": "tokens",
                "body": None,
                "responses": {
                    "200": "paymentInstrument (stored) and conflicts (requested)",
                    "404": "resourceNotFound: no conflict pending (or no such token)",
                },
            },
            "PUT": {
                "description": "Apply every pending conflicting value to the token.",
                "operationId": "token_conflicts_apply",
                "scope": "tokens",
                "body": None,
                "responses": {
                    "204": "Applied; no body",
                    "404": "resourceNotFound: no conflict pending (or no such token)",
                },
            },
        },
    },
    "networkToken": {
        "description": "The newest network token made for this card token ({base}/network-tokens/{tokenId}); its "
        "cryptograms are at {its href}/cryptograms. Present once one exists.",
        "methods": {
            "GET": {
                "description": "The network token and its lifecycle (a deleted one answers with status DELETED).",
                "operationId": "network_token_get",
                "scope": "network-tokens",
                "body": None,
                "responses": {"200": "The network token", "404": "resourceNotFound"},
            },
            "DELETE": {
                "description": "Delete the network token at its network.",
                "operationId": "network_token_delete",
                "scope": "network-tokens",
                "body": None,
                "responses": {
                    "204": "Deleted; no body",
                    "404": "resourceNotFound",
                    "422": "lifecycleTransitionNotAllowed: deleted already",
                },
            },
        },
    },
}
assert set(TOKEN_DETAILS) <= set(RELATIONS)


def rel(name: str) -> str:
    """The curied name of relation ``name``: ``tokens:<name>``."""
    return f"{CURIE_NAME}:{name}"


def relation_document(*, name: str) -> dict:
    """The document of relation ``name``. Raises ResourceNotFound for a name that is none of ``RELATIONS``."""
    relation = RELATIONS.get(name)
    if relation is None:
        raise ResourceNotFound("No link relation of the tokens API has this name")
    return {"rel": rel(name), **relation}
