"""The back office for network tokens: issuers, tokens and their lifecycle, asynchronous requests and batches.

No page shows a token number (DPAN), a card number or any ciphertext: a network token is its tokenId, the last four
digits of its number, its card's BIN and last digits, and its PAR. A search that looks like a card or token number
is refused before it reaches a query or a page.

Tokens change only through lifecycle actions, which run ``networks.services.network_token_operate``: the code the
TSP's own notifications run, plus one audit row per token as ``admin:<username>``; the merchant gets its
``network_token.updated`` webhook exactly as when the network suspends a token itself. The actions take the network
token's change permission (the ``operators`` group, migration 0003), ask for confirmation, and offer each action for
the statuses the service allows it from; the service checks each token again under its row lock. Opening a token's
page is audited too. Requests, batches and their items are history: view only, but for "retry now". Issuers are the
one thing edited through a form (name, range, card art, rate limit), by the back office: a new range or rate limit
after a confirmation page (old -> new), each edit saved and audited by the issuer services.
"""

from networks.admin import batches, issuers, provisioning_requests, tokens  # noqa: F401 - each registers its pages
