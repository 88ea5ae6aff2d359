"""Property-based: schemathesis generates requests from the OpenAPI description (valid ones and
ones that break it) and sends them to the running server; no input may produce a server error,
and every answer must be what the description says."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from siegel.http_api import openapi_document

schema = schemathesis.openapi.from_dict(openapi_document())


@schemathesis.serializer("message/rfc822")
def _mime(_context: object, value: object) -> bytes:
    """A generated MIME body is any string or bytes: as it is, UTF-8."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_no_input_gives_a_server_error(served, case):
    case.call_and_validate(base_url=served.base_url, headers=served.auth("clerk"),
                           checks=[not_a_server_error, status_code_conformance,
                                   content_type_conformance, response_schema_conformance])
