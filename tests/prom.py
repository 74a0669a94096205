"""Scraping GET /metrics in tests, parsed with prometheus_client's own text parser."""

from __future__ import annotations

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: FlaskClient) -> Samples:
    """GET /metrics, parsed with prometheus_client's own parser: {(sample, labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def histogram(samples: Samples, name: str, **labels: str) -> dict[str, float]:
    """le -> cumulative count of one histogram series, plus its count and sum."""
    series = {
        dict(key)["le"]: v
        for (sample, key), v in samples.items()
        if sample == f"{name}_bucket" and {k: x for k, x in key if k != "le"} == labels
    }
    series["count"] = value(samples, f"{name}_count", **labels)
    series["sum"] = value(samples, f"{name}_sum", **labels)
    return series
