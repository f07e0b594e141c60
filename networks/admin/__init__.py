"""The back office for network tokens: issuers, tokens and their lifecycle, asynchronous requests and batches.

No page shows a token number (DPAN), a card number or any ciphertext: a network token is its tokenId, the last four
digits of its number, its card's BIN and last digits, and its PAR. A search that looks like a card or token number
is refused before it reaches a query or a page.

Tokens change only through lifecycle actions, which run ``networks.services.lifecycle_apply``, the code the TSP's
own notifications run: the merchant gets its ``network_token.updated`` webhook exactly as when the network suspends
a token itself. The actions take the network token's change permission (the ``operators`` group, migration 0003),
ask for confirmation, check each token's state under its row lock, and write one audit row per token as
``admin:<username>``. Opening a token's page is audited too. Requests, batches and their items are history: view
only. Issuers are the one thing edited through a form (name, range, card art, rate limit), and each edit is audited.
"""

from networks.admin import batches, issuers, provisioning_requests, tokens  # noqa: F401 - each registers its pages
