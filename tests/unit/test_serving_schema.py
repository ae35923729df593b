"""Property-based API test: schemathesis generates requests from the OpenAPI schema; no answer is a 5xx.

Runs in-process on the ASGI app with a fake predictor: valid and invalid requests (schemathesis' positive
and negative modes) for every operation, up to 100 each. The 1,000-request run against a live server is
``benchmarks/serve_fuzz.py``. (The schemathesis pytest plugin's ``from_fixture`` does not run on pytest 9,
so the cases are drawn with ``operation.as_strategy()`` under a plain hypothesis test.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.python import asgi

from tests.unit.serving_fakes import (
    FakeLoader,
    FakePredictor,
    make_store,
    serve_app,
    serve_config,
    settings_for,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    home: Path = tmp_path_factory.mktemp("fuzz-home")
    app = serve_app(
        FakePredictor(1),
        settings_for(home),
        # The shipped key cache: the fuzz spends its time on requests, not on a scrypt check per request.
        serve_config(max_items=8, max_text_length=300, max_body_bytes=8192, key_cache_ttl_s=5.0),
        store=make_store(home, flush_interval_s=0.05),
        loader=FakeLoader(2),
    )
    app.state.service.state.create_tables()
    _, token = app.state.service.keys.create("fuzz", "admin")
    yield app, {"Authorization": f"Bearer {token}"}
    asgi.shutdown_lifespans()  # stops the log writer as a real shutdown would


def test_no_generated_request_gets_a_server_error(api: tuple[Any, dict[str, str]]) -> None:
    app, auth = api
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: Counter[tuple[str, int]] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 10
    for operation in operations:
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
        )

        label = operation.label

        @given(case=cases)
        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            response = case.call(headers=auth)
            statuses[(label, response.status_code)] += 1  # noqa: B023 (run before the next iteration)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
            )

        check()
    assert sum(statuses.values()) >= 300, statuses
    assert any(code == 200 for _, code in statuses), statuses  # valid requests got through
    assert any(code == 422 for _, code in statuses), statuses  # invalid ones were refused
