"""The HTTP API against its own OpenAPI document: schemathesis generates requests from the document
served by a live relay (loopback, SQLite and PostgreSQL) and checks every answer: no 5xx, only
documented status codes, content types, headers and bodies; data the document calls valid is taken,
data it calls invalid is refused. A stateful run follows the document's links (open a case, then
read, close and list its events with the id the answer gave). Bounded: a few seconds per database.

The pytest plugin of schemathesis (`schemathesis.pytest.from_fixture`) does not run under the
pytest this project uses, so the tests drive its Python API directly: each operation's hypothesis
strategy, and the state machine built from the links.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from relay.api.schemas import LINE, LINES
from relay.app import App
from relay.core.cases import _text
from relay.core.errors import InvalidInput
from tests.helpers.api import base_url, bearer, case_body

BOUNDED = settings(max_examples=20, deadline=None, database=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                          HealthCheck.data_too_large])
CREATE = "POST /v1/cases"
# what the document cannot say, each a documented 422 problem: a review from the platform's own
# invitation may not be contacted, the two parties need two addresses, and an Idempotency-Key (a
# generated one, too) may not be used again with another body
REFUSALS = ("/problems/not-contactable", "/problems/idempotency-mismatch")
# and a body over 64 KiB, which a long enough message of escaped characters makes (413)
TOO_LARGE = "/problems/too-large"
SAME_ADDRESS = [{"field": "reviewer_email", "problem": "is the same as the business's address"}]


@dataclass
class Api:
    app: App
    schema: Any  # schemathesis.BaseSchema, loaded from the running relay


@pytest.fixture
def api(db_url: str, app_factory: Any, relay_factory: Any) -> Api:
    """An intake-only relay (nothing is sent) whose rate limit stays out of the way, and its document
    with the key schemathesis sends as the document's bearer scheme (so it can also check that a
    request without it is refused)."""
    app = app_factory(db_url, api={"requests_per_minute": 1_000_000})
    relay_factory(app, background=False)
    token = bearer(app)["Authorization"].split(" ", 1)[1]
    config = schemathesis.Config.from_dict({
        "auth": {"auto-signup": False, "openapi": {"HTTPBearer": {"bearer": token}}},
        # 413 (body over the limit) refuses invalid data too
        "checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 404, 405, 406, 413, 415, 422, 429]}},
    })
    return Api(app, schemathesis.openapi.from_url(f"{base_url(app)}/openapi.json", config=config))


def judge(case: Any, response: Any, **validation: Any) -> None:
    """schemathesis' checks, except that opening a case may refuse valid data in the two ways the
    document cannot express; any other refusal of valid data still fails."""
    creating = case.operation.label == CREATE
    excluded = [schemathesis.checks.positive_data_acceptance] if creating else None
    case.validate_response(response, excluded_checks=excluded, **validation)
    mode = case.meta.generation.mode if case.meta is not None else GenerationMode.POSITIVE
    if creating and mode is GenerationMode.POSITIVE and response.status_code not in (201, 409):
        problem = json.loads(response.content)
        assert (response.status_code == 413 and problem["type"] == TOO_LARGE) or (
            response.status_code == 422 and (problem["type"] in REFUSALS or problem.get("errors") == SAME_ADDRESS)), \
            response.text


def test_every_operation_answers_as_its_document_says(api: Api) -> None:
    ran = Counter[str]()
    for result in api.schema.get_all_operations():
        operation = result.ok()
        raw = operation.definition.raw
        modes = [GenerationMode.POSITIVE]
        if raw.get("parameters") or raw.get("requestBody"):  # nothing to make invalid otherwise
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            @BOUNDED
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                judge(case, case.call())
                ran[case.operation.label] += 1

            check()
    assert set(ran) >= {CREATE, "GET /v1/cases", "GET /v1/cases/{case_id}", "POST /v1/cases/{case_id}/close",
                        "GET /v1/cases/{case_id}/events", "POST /v1/erasure", "GET /readyz", "GET /metrics"}


def test_the_links_lead_from_a_new_case_to_reading_and_closing_it(api: Api) -> None:
    """schemathesis' stateful run over the OpenAPI links of `POST /v1/cases` (GetCase, CloseCase,
    ListCaseEvents): a 200 from reading or closing a case can only come from following a link,
    as generated ids name no case."""
    answered = Counter[tuple[str, int]]()
    reviews = itertools.count(1)

    class Machine(api.schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            """Each case opened is a new review, without an Idempotency-Key: hypothesis replays its
            choices, and a second case for a review (or a key used again) would answer 409 (422)
            where the first answered 201, which it takes for flaky generation. (Only valid bodies get
            a new review id: an invalid one keeps what makes it invalid, its review id too.)"""
            super().before_call(case)
            positive = case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE
            if case.operation.label == CREATE and isinstance(case.body, dict) and positive:
                case.body["review_id"] = f"R-{next(reviews)}"
                for name in [h for h in case.headers or {} if h.lower() == "idempotency-key"]:
                    del case.headers[name]

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            answered[(case.operation.label, response.status_code)] += 1

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            judge(case, response, additional_checks=additional_checks, transport_kwargs=kwargs or None,
                  recorder=getattr(self, "recorder", None))

    Machine.run(settings=settings(BOUNDED, max_examples=25, stateful_step_count=6))
    assert answered[(CREATE, 201)] > 0, answered
    assert answered[("GET /v1/cases/{case_id}", 200)] > 0, answered
    assert answered[("POST /v1/cases/{case_id}/close", 200)] > 0, answered
    assert answered[("GET /v1/cases/{case_id}/events", 200)] > 0, answered


def test_what_schemathesis_found(api: Api) -> None:
    """The answers schemathesis found wrong, kept as plain examples: a cursor past the 64-bit
    integers and a NUL in a filter were 500s (SQLite cannot bind the one, PostgreSQL cannot compare
    the other); a business name with a Unicode line break (NEL, U+2028) was a 500 when the notice's
    From header was written; a body that is not UTF-8 got an undocumented 400. A 20,000-character
    message fits the 64 KiB body limit as UTF-8; escaped character by character it does not, and
    that is a documented 413."""
    url, key = base_url(api.app), bearer(api.app)
    for name in ("Shop\x85GmbH", "Shop\u2028GmbH"):
        refused = httpx.post(f"{url}/v1/cases", json=case_body(business_name=name), headers=key, timeout=10)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"] == [{"field": "business_name", "problem": "must be a single line (no line breaks)"}]
    for query in ("cursor=99999999999999999999", "review_id=%00", "business_id=a%00b"):
        response = httpx.get(f"{url}/v1/cases?{query}", headers=key, timeout=10)
        assert response.status_code == 422, (query, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert httpx.get(f"{url}/v1/cases?cursor=999999999999999999", headers=key, timeout=10).status_code == 200
    body = json.dumps(case_body(message="Grüße aus Köln. " * 1250), ensure_ascii=False).encode()
    created = httpx.post(f"{url}/v1/cases", content=body, timeout=10,
                         headers={**key, "Content-Type": "application/json"})
    assert created.status_code == 201 and len(body) < 64 * 1024, created.text  # 20,000 characters
    escaped = json.dumps(case_body(review_id="R-escaped", message="\U0001F600" * 20_000)).encode()
    too_large = httpx.post(f"{url}/v1/cases", content=escaped, timeout=10,
                           headers={**key, "Content-Type": "application/json"})
    assert too_large.status_code == 413 and too_large.json()["type"] == "/problems/too-large"
    document = httpx.get(f"{url}/openapi.json", timeout=10).json()
    assert "400" in document["paths"]["/v1/cases"]["post"]["responses"]
    problem = document["paths"]["/v1/cases/{case_id}"]["get"]["responses"]["404"]["content"]
    assert list(problem) == ["application/problem+json"] and "schema" in problem["application/problem+json"]


@settings(max_examples=2000, deadline=None, database=None)
@given(st.text(st.one_of(st.sampled_from(" \t\r\n\x00\x0b\x0c\x1c\x7f\x85\xa0\u2028\u2029\u3000ab"),
                         st.characters()), max_size=8))
def test_the_documents_text_patterns_say_what_the_core_accepts(text: str) -> None:
    """The patterns the document gives the case's text fields (relay.api.schemas) accept exactly
    what relay.core.cases does: schemathesis' valid data is then taken and its invalid data refused."""
    def accepted(single_line: bool) -> bool:
        try:
            _text("field", text, 10_000, single_line=single_line)
        except InvalidInput:
            return False
        return True

    assert (re.search(LINE, text) is not None) == accepted(True)
    assert (re.search(LINES, text) is not None) == accepted(False)
