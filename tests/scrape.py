"""Reading /metrics in tests: every sample parsed by prometheus_client's own parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api


async def scrape(api: Api, token: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """All samples of /metrics as {(name, sorted labels): value}."""
    async with api.client.get("/metrics", headers=api.headers(token)) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sample with exactly these labels; a missing sample fails the test (it is not read as 0)."""
    key = (name, tuple(sorted(labels.items())))
    if key not in samples:
        present = sorted(str(dict(other)) for sample_name, other in samples if sample_name == name)
        pytest.fail(f"/metrics has no sample {name}{labels}; samples of {name}: {present or 'none'}")
    return samples[key]
