"""The curl examples of docs/api.md, run as they stand against a real `relay serve` (in-process,
uvicorn on a loopback port): what the integration guide shows is what the API does."""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

from relay.core import credentials
from relay.store import api_keys
from tests.helpers.environment import REPO, Sink


def examples() -> dict[str, str]:
    """`# api-example: NAME` lines in the guide's sh blocks, each with the lines up to the next."""
    text = (REPO / "docs" / "api.md").read_text()
    found: dict[str, str] = {}
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        name = None
        for line in block.splitlines():
            label = re.match(r"# api-example: (\w+)", line)
            if label:
                name = label.group(1)
                found[name] = ""
            elif name is not None:
                found[name] += line + "\n"
    return found


def run(example: str, env: dict[str, str]) -> Any:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", example], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})
    assert done.returncode == 0, (example, done.stdout, done.stderr)
    return json.loads(done.stdout)


def test_the_guide_s_examples_work(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
    found = examples()
    assert list(found) == ["open", "read", "list", "events", "close", "erasure"]
    app = app_factory(db_url, outbound={"url": sink.url})
    key = credentials.new_api_key()
    api_keys.create("docs", credentials.digest(key), app.clock.now())
    relay_factory(app)
    env = {"RELAY_API": f"http://127.0.0.1:{app.settings.api.port}", "KEY": key}

    opened = run(found["open"], env)
    assert opened["state"] == "awaiting_reply" and opened["reviewer_address"].endswith("@relay.test")
    assert run(found["open"], env) == opened  # the Idempotency-Key makes the retry safe
    env["CASE"] = str(opened["id"])
    assert run(found["read"], env)["review_id"] == "R-1001"
    assert [c["id"] for c in run(found["list"], env)["items"]] == [opened["id"]]
    assert run(found["events"], env)[0]["name"] == "case.opened"
    assert run(found["close"], env)["state"] == "closed"
    assert run(found["erasure"], env)["reviews"] == 1

