"""What the demo is made of: merchants, brands, names and addresses, and the plan of each token and endpoint."""

from dataclasses import dataclass
from datetime import datetime

from networks.tsp import CardData
from networks.tsp.base import DECLINE_SUFFIX, STEP_UP_SUFFIX
from notifications.models import WebhookEndpoint
from vault import cards, services
from vault.models import Token

# The merchant `make run` prints a key of (``manage.py setup_local``), whose page the demo checkout is.
DEMO_MERCHANT = "Demo merchant"
# The merchants of the demo data set (``manage.py seed_demo``).
DEMO_MERCHANTS = ("Northwind Outfitters", "Harbour Coffee Roasters", "Lumen Travel")
MERCHANT_WEIGHTS = (5, 3, 2)
DEMO_MARK = "(demo"
DAYS = 30
CHUNK = 250
DISCARD_URL = "http://127.0.0.1:9"

# brand: (share of the tokens, [(BIN, card length), …]). Where a network has issuers in the registry (networks
# migration 0002), the BINs fall in several of their ranges, so network tokens spread over issuers.
BRANDS = {
    "VISA": (40, [("444433", 16), ("400012", 16), ("453201", 16), ("476173", 16)]),
    "MASTERCARD": (28, [("555555", 16), ("520082", 16), ("222300", 16)]),
    "AMEX": (8, [("371449", 15), ("340000", 15)]),
    "DISCOVER": (5, [("601100", 16), ("650002", 16)]),
    "DINERS": (3, [("305693", 14), ("361234", 14)]),
    "JCB": (5, [("353011", 16), ("356600", 16)]),
    "UNIONPAY": (6, [("620000", 16), ("621234", 19)]),
    "MAESTRO": (5, [("675964", 16), ("630400", 18), ("560000", 12)]),
}
NETWORK_BRANDS = ("VISA", "MASTERCARD", "AMEX")
SPECIAL_SUFFIXES = (DECLINE_SUFFIX, STEP_UP_SUFFIX)
# How many cards a namespace (a shopper) holds: mostly a few, now and then a full one.
NAMESPACE_SIZES = ([1, 2, 3, 4, 6, 10, 16], [30, 25, 18, 12, 8, 4, 3])

FIRST_NAMES = (
    "Ada",
    "Ben",
    "Chloe",
    "Dmitri",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemi",
    "Lars",
    "Maya",
    "Nikhil",
    "Olga",
    "Pedro",
    "Quinn",
    "Rosa",
    "Samir",
    "Tess",
    "Umar",
    "Vera",
    "Wen",
    "Yusuf",
)
LAST_NAMES = (
    "Abbott",
    "Bianchi",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Patel",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Varga",
    "Walsh",
    "Yilmaz",
    "Zhang",
)
CITIES = (
    ("London", "EC1A 1BB", "GB"),
    ("Manchester", "M1 1AE", "GB"),
    ("Paris", "75002", "FR"),
    ("Lyon", "69002", "FR"),
    ("Berlin", "10115", "DE"),
    ("Munich", "80331", "DE"),
    ("Madrid", "28013", "ES"),
    ("Amsterdam", "1012 JS", "NL"),
    ("Dublin", "D02 X285", "IE"),
    ("Milan", "20121", "IT"),
)
STREETS = ("High Street", "Station Road", "Church Lane", "Park Avenue", "Mill Road", "Victoria Street", "Kings Road")
FAILURES = (
    (None, "connection failed: ConnectionRefusedError"),
    (None, "timed out after 15 s"),
    (503, ""),
    (500, ""),
    (502, ""),
)


@dataclass(eq=False)  # compared and hashed by identity: two plans are two cards
class Plan:
    """One card to tokenize: who holds it, where, and when the demo pretends it arrived."""

    merchant: int
    brand: str
    number: str
    holder: str
    month: int
    year: int
    address: dict | None
    namespace: str | None
    created_at: datetime
    role: str = "plain"  # "plain", "step-up" (its network token is INACTIVE) or "decline" (the issuer refuses)
    token: Token | None = None

    def __repr__(self):
        return f"Plan({cards.mask(self.number)}, {self.role})"

    def card(self, **changes) -> services.Card:
        fields = {
            "number": self.number,
            "holder_name": self.holder,
            "expiry_month": self.month,
            "expiry_year": self.year,
            "billing_address": self.address,
            **changes,
        }
        return services.Card(**fields)

    def card_data(self) -> CardData:
        return CardData(self.number, self.month, self.year, self.holder)

    @property
    def email(self) -> str:
        return f"{self.holder.lower().replace(' ', '.')}@example.com"


@dataclass
class EndpointPlan:
    """How a demo endpoint behaved: attempts from ``failing_since`` on fail, from ``disabled_at`` on it is off."""

    endpoint: WebhookEndpoint
    failing_since: datetime | None = None
    disabled_at: datetime | None = None
    flakiness: float = 0.03
