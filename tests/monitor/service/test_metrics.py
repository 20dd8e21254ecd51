"""Quote-cycle metrics as a scraper sees them."""

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.ingest.quotes import QuoteCycle
from monitor.service.metrics import Metrics


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_quote_cycles_move_the_quote_counters() -> None:
    metrics = Metrics()
    before = scrape(metrics)
    assert before[("kmon_quote_cycles_total", (("outcome", "partial"),))] == 0
    metrics.observe_quotes(
        QuoteCycle(stored=3, served_by={"naver": 2, "yahoo": 1}, rejected=[("x", "why")])
    )
    metrics.observe_quotes(QuoteCycle(stored=0, served_by={"yahoo": 2}, missing=["KOSPI"]))
    after = scrape(metrics)
    assert after[("kmon_quotes_served_total", (("source", "naver"),))] == 2
    assert after[("kmon_quotes_served_total", (("source", "yahoo"),))] == 3
    assert after[("kmon_quotes_stored_total", ())] == 3
    assert after[("kmon_quotes_rejected_total", ())] == 1
    assert after[("kmon_quote_cycles_total", (("outcome", "complete"),))] == 1
    assert after[("kmon_quote_cycles_total", (("outcome", "partial"),))] == 1
