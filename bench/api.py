"""The platform's API under load, measured against a bare endpoint of the same framework.

In one run, on the same machine, with the same client (httpx over keep-alive connections):
(a) a bare FastAPI application on uvicorn whose POST validates the same body and answers 201 and
whose GET answers a small JSON object, nothing stored; (b) `relay serve` with its production
settings (SQLite with durable commits, or PostgreSQL; maildir outbox; logging on), where every POST
opens a case and queues its contact request in one committed transaction. Prints for each:
cases opened per second, `GET /v1/cases/{id}` per second, each as a ratio to (a), and the p50/p99
latency of each at half of the relay's own maximum rate (an open-loop load: requests are started
on a schedule, not when the last one returned, so a slow answer cannot hide the next one's wait).

    .venv/bin/python bench/api.py [--requests 2000] [--concurrency 16] [--database sqlite|postgresql]
                                  [--json bench/results/api.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg2

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PG_URL = os.environ.get("RELAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

BARE_APP = '''
from fastapi import FastAPI
from pydantic import BaseModel

class Body(BaseModel):
    review_id: str
    business_id: str
    business_name: str
    business_email: str
    reviewer_email: str
    reviewer_name: str
    origin: str = "organic"
    locale: str = "de"
    requests: list[str] = []
    message: str

app = FastAPI()

@app.post("/v1/cases", status_code=201)
async def create(body: Body) -> dict:
    return {"id": 1, "review_id": body.review_id, "state": "awaiting_reply"}

@app.get("/v1/cases/{case_id}")
async def read(case_id: int) -> dict:
    return {"id": case_id, "state": "awaiting_reply"}
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not listen within 30 s")


@contextmanager
def running(command: list[str], port: int, cwd: Path, env: dict[str, str]) -> Iterator[None]:
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(port, process)
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def case_body(n: int) -> dict[str, object]:
    return {"review_id": f"R-{n}", "business_id": "B-bench", "business_name": "Beispiel Shop GmbH",
            "business_email": "service@shop.example", "reviewer_email": f"reviewer{n}@example.org",
            "reviewer_name": "Max M.", "requests": ["order_number"],
            "message": "Bitte nennen Sie uns Ihre Bestellnummer. " * 5}


async def closed_loop(base: str, headers: dict[str, str], count: int, concurrency: int,
                      request: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]) -> float:
    """Requests per second with `concurrency` clients, each sending its next when the last returned."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as client:
        numbers = iter(range(count))
        failures = 0

        async def one_client() -> None:
            nonlocal failures
            for n in numbers:
                response = await request(client, n)
                failures += response.status_code >= 300
        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        took = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{failures} requests failed")
    return count / took


async def open_loop(base: str, headers: dict[str, str], rate: float, count: int,
                    request: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]) -> list[float]:
    """Latencies (ms) of `count` requests started at `rate` a second, whatever the answers do."""
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as client:
        async def timed(n: int) -> None:
            started = time.perf_counter()
            response = await request(client, n)
            if response.status_code >= 300:
                raise SystemExit(f"request failed at half load: {response.status_code} {response.text[:200]}")
            latencies.append((time.perf_counter() - started) * 1000)
        tasks = []
        start = time.perf_counter()
        for n in range(count):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(timed(n)))
        await asyncio.gather(*tasks)
    return latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def measure(base: str, headers: dict[str, str], args: argparse.Namespace, offset: int,
            existing: int) -> dict[str, float]:
    async def post(client: httpx.AsyncClient, n: int) -> httpx.Response:
        return await client.post("/v1/cases", json=case_body(offset + n))

    async def get(client: httpx.AsyncClient, n: int) -> httpx.Response:
        return await client.get(f"/v1/cases/{1 + n % existing}")

    posts = asyncio.run(closed_loop(base, headers, args.requests, args.concurrency, post))
    gets = asyncio.run(closed_loop(base, headers, args.requests * 2, args.concurrency, get))
    half = args.requests // 2
    post_lat = asyncio.run(open_loop(base, headers, posts / 2, half,
                                     lambda c, n: post(c, n + args.requests)))
    get_lat = asyncio.run(open_loop(base, headers, gets / 2, half * 2, get))
    return {"posts_per_s": posts, "gets_per_s": gets,
            "post_p50_ms_half_load": percentile(post_lat, 50), "post_p99_ms_half_load": percentile(post_lat, 99),
            "get_p50_ms_half_load": percentile(get_lat, 50), "get_p99_ms_half_load": percentile(get_lat, 99)}


def bare(folder: Path, args: argparse.Namespace) -> dict[str, float]:
    (folder / "bare_api.py").write_text(BARE_APP)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bare_api:app", "--port", str(port), "--log-level", "warning",
               "--no-access-log"]
    with running(command, port, folder, {}):
        return measure(f"http://127.0.0.1:{port}", {}, args, 0, 1)


def relay(folder: Path, args: argparse.Namespace) -> dict[str, float]:
    if args.database == "postgresql":
        name = f"relay_bench_{os.getpid()}"
        conn = psycopg2.connect(PG_URL)
        conn.autocommit = True  # CREATE DATABASE runs outside a transaction
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        database = f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    else:
        database = "sqlite:///relay.db"
    port, smtp = free_port(), free_port()
    (folder / "settings.toml").write_text(
        f'[relay]\ndomain = "relay.bench"\ntemplates = "{REPO / "templates"}"\n'
        f'[inbound]\nport = {smtp}\n[api]\nport = {port}\nrequests_per_minute = 1000000\n'
        f'[outbound]\nurl = "maildir:outbox"\n[storage]\ndatabase = "{database}"\n'
        f'[log]\nfile = "relay.log"\nstderr = false\n[auth]\nmode = "off"\n')
    cli = [sys.executable, "-m", "relay", "--config", str(folder / "settings.toml")]
    env = {"PYTHONPATH": str(REPO)}
    key = subprocess.run([*cli, "api-key", "create", "bench"], cwd=folder, env={**os.environ, **env},
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        with running([*cli, "serve"], port, folder, env):
            return measure(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}, args, 0, args.requests)
    finally:
        if args.database == "postgresql":
            conn = psycopg2.connect(PG_URL)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "api.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = bare(Path(tmp), args)
        (Path(tmp) / "relay").mkdir()
        measured = relay(Path(tmp) / "relay", args)
    rows = [("cases opened per second (POST /v1/cases)", "posts_per_s"), ("case reads per second (GET)", "gets_per_s")]
    print(f"{'':44} {'bare FastAPI':>13} {'relay (' + args.database + ')':>18} {'ratio':>7}")
    for label, name in rows:
        print(f"{label:44} {base[name]:13.0f} {measured[name]:18.0f} {measured[name] / base[name]:7.2f}")
    for label, name in (("POST p50 / p99 at half load (ms)", "post"), ("GET p50 / p99 at half load (ms)", "get")):
        print(f"{label:44} {base[name + '_p50_ms_half_load']:6.1f} / {base[name + '_p99_ms_half_load']:4.1f} "
              f"{measured[name + '_p50_ms_half_load']:11.1f} / {measured[name + '_p99_ms_half_load']:4.1f}")
    result = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "requests": args.requests,
              "concurrency": args.concurrency, "database": args.database, "bare": base, "relay": measured,
              "ratios": {name: measured[name] / base[name] for _, name in rows}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
