"""The operators' webhook console: endpoints, events, deliveries and their attempts.

Every page here is read-only: rows change only through actions, and actions only through
``notifications.services``, the code the merchant API and the workers run too. (A form saving a whole endpoint or
delivery row would write back stale copies of the columns the workers keep moving: ``failing_since``, leases,
``next_attempt_at``.) Viewing takes the model's view permission; running an action takes its change permission,
which the ``operators`` group holds (migration 0002) and nobody in the back office does. Each action asks for
confirmation when it touches endpoints, and writes one audit row per object as ``admin:<username>``.

A signing secret is never a field of any page: its first characters identify it, and a secret rotated here is shown
once, in the message that follows the rotation, exactly as the API shows it once to the merchant.
"""

from notifications.admin import deliveries, endpoints  # noqa: F401 - registers the pages
from notifications.admin.base import OperationsAdmin

__all__ = ["OperationsAdmin"]
