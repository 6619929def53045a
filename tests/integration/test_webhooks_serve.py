"""Webhooks from a running `relay serve` (in-process: SMTP, the API, the workers on their loop) to a
real endpoint on loopback, on SQLite and PostgreSQL: the API's events say which webhook each made
and its state, /metrics and /readyz know the webhook worker, and the guide's signature checks in
the shell and in Node.js accept what the relay signed (and refuse a changed body)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from typing import Any

import httpx
import pytest

from tests.helpers.api import base_url, bearer, case_body, scrape_until, value
from tests.helpers.environment import REPO, Sink
from tests.helpers.webhooks import Receiver


def snippets() -> dict[str, str]:
    """`webhook-example: NAME` blocks of docs/api.md."""
    text = (REPO / "docs" / "api.md").read_text()
    return {m.group(2): m.group(3) for m in re.finditer(r"```(sh|js)\n(?:#|//) webhook-example: (\w+)\n(.*?)```",
                                                        text, flags=re.S)}


def test_serve_sends_webhooks_and_the_api_shows_them(db_url: str, app_factory: Any, relay_factory: Any,
                                                     sink: Sink) -> None:
    receiver = Receiver()
    try:
        app = app_factory(db_url, outbound={"url": sink.url}, webhooks=receiver.settings())
        relay_factory(app)
        api, key = base_url(app), bearer(app)
        created = httpx.post(f"{api}/v1/cases", json=case_body(review_id="R-hooked"), headers=key, timeout=10)
        assert created.status_code == 201, created.text
        case = created.json()["id"]
        got = receiver.wait(2)
        assert sorted(r.type for r in got) == ["case.opened", "case.request_delivered"]
        assert all(r.verified for r in receiver.all())

        deadline = time.monotonic() + 10
        while True:  # the worker records the answer just after the endpoint gave it
            events = httpx.get(f"{api}/v1/cases/{case}/events", headers=key, timeout=10).json()
            hooks = {e["name"]: e["webhook"] for e in events}
            if all(h is None or h["state"] == "sent" for h in hooks.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        ids = {r.type: r.id for r in got}
        assert hooks == {"case.opened": {"id": ids["case.opened"], "state": "sent"}, "notice.queued": None,
                         "notice.sent": {"id": ids["case.request_delivered"], "state": "sent"}}
        document = httpx.get(f"{api}/openapi.json", timeout=10).json()
        assert "webhook" in document["components"]["schemas"]["CaseEvent"]["properties"]

        samples = scrape_until(app, lambda s: value(s, "relay_webhook_attempts_total", result="sent") == 2)
        assert value(samples, "relay_webhook_attempts_total", result="sent") == 2
        assert value(samples, "relay_webhook_attempts_total", result="failed") == 0
        assert {s: value(samples, "relay_webhooks", state=s) for s in ("pending", "sending", "failed")} == \
            {"pending": 0, "sending": 0, "failed": 0}
        assert value(samples, "relay_webhooks_stopped") == 0
        assert value(samples, "relay_webhooks_oldest_pending_age_seconds") == 0
        ready = httpx.get(f"{api}/readyz", timeout=10).json()
        assert ready["checks"]["webhook_worker"] == "ok"

        _the_guide_s_checks_agree(receiver, got[0])
    finally:
        receiver.stop()


def _the_guide_s_checks_agree(receiver: Receiver, webhook: Any) -> None:
    found = snippets()
    assert set(found) == {"shell", "node"}
    env = {"SECRET": receiver.secret, "WEBHOOK_ID": webhook.id, "WEBHOOK_TIMESTAMP": webhook.headers["webhook-timestamp"],
           "WEBHOOK_SIGNATURE": webhook.headers["webhook-signature"], "BODY": webhook.body.decode()}

    def shell(**changes: str) -> str:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", found["shell"]], capture_output=True, text=True,
                              timeout=30, env={**os.environ, **env, **changes})
        assert done.returncode in (0, 1), done.stderr
        return done.stdout.strip()

    assert shell() == "valid"
    assert shell(BODY=env["BODY"].replace("case", "Case")) == ""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the JavaScript check was not run (the shell one was)")
    call = found["node"] + "\nconst e = process.env;\nconsole.log(verify(e.SECRET, e.WEBHOOK_ID, e.WEBHOOK_TIMESTAMP, " \
                           "e.BODY, e.WEBHOOK_SIGNATURE));\n"
    for body, expected in ((env["BODY"], "true"), (env["BODY"] + " ", "false")):
        done = subprocess.run(["node", "-e", call], capture_output=True, text=True, timeout=30,
                              env={**os.environ, **env, "BODY": body})
        assert done.stdout.strip() == expected, done.stderr
