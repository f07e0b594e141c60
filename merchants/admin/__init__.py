"""The back office for merchants and their API keys (superusers only: no group holds these permissions but a view).

- ``merchants``: merchants, made with their first key, their rate limits changed after a confirmation;
- ``keys``: API keys, shown once on a page of their own, revoked for good, with their last use.

A rate limit is saved after a confirmation showing it old -> new (core.admin_changes, which the issuers' page uses too).
"""

from merchants.admin import keys, merchants  # noqa: F401 - each registers its pages
