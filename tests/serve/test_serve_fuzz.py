"""Fuzz every API operation from its OpenAPI schema: never a 5xx, always what the schema says."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from crossmodal.serve import ServeSettings, create_app  # noqa: E402
from tests.serve_helpers import build_index  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture
def api_schema(tmp_path, colour_folder, fake_encoder):
    app = create_app(build_index(tmp_path, colour_folder, fake_encoder),
                     ServeSettings(rate_per_second=0, allowed_hosts=("testserver",)),
                     encoder=fake_encoder)  # schemathesis calls the app by that name
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    case.call_and_validate(checks=CHECKS)
