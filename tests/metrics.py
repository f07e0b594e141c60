"""What a scraper reads of ``GET /metrics``, for the tests of the metrics: one scrape, its text and its samples."""

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One scrape of /metrics: its text and its samples, as ``(sample name, sorted labels) -> value``."""

    def __init__(self, text: str):
        self.text = text
        self.samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    @property
    def words(self) -> str:
        """The text without its sample values: the names, labels, help and types, where a card or an id could be
        written. A value is a number, whose digits may hold any short run of digits (a BIN, in 0.014718849000018963)."""
        return "\n".join(line if line.startswith("#") else line.rpartition(" ")[0] for line in self.text.splitlines())

    @classmethod
    def of(cls, client: Client | None = None):
        """GET /metrics (as an anonymous client unless ``client`` is given), which must answer 200."""
        response = (client or Client()).get("/metrics")
        assert response.status_code == 200, response.content
        return cls(response.content.decode())

    def value(self, name: str, **labels) -> float:
        """The sample ``name`` with exactly ``labels``; 0 when the scrape has none (a counter not counted yet)."""
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)
