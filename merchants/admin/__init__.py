"""The back office for merchants and their API keys (superusers only: no group holds these permissions but a view).

- ``merchants``: merchants, made with their first key, their rate limits changed after a confirmation;
- ``keys``: API keys, shown once on a page of their own, revoked for good;
- ``changes``: the confirmation of a change form's weightier fields (old -> new), which the issuers' page uses too.
"""

from merchants.admin import keys, merchants  # noqa: F401 - each registers its pages
