"""Inbound acceptance and end to end, measured against the bare SMTP stack, with Postfix's
smtp-source as the load.

In one run, on the same machine: smtp-source sends N answers of about 5 KB over 20 concurrent
sessions to (a) a bare aiosmtpd server whose handler only answers 250, (b) `relay serve` on SQLite
(with sender authentication off, and again with `[auth] mode = "verify"` against a local name
server) and (c) `relay serve` on PostgreSQL. The relay runs with its production settings (durable commits,
full sanitising, logging on, outbound delivering to Postfix's smtp-sink); only the per-conversation
rate limit is lifted, because the whole load is one conversation. Prints messages per second and
the ratios (b)/(a) and (c)/(a), and writes them as JSON. The bare server is measured before and after
the relay runs and the faster of the two is the baseline.

    .venv/bin/python bench/acceptance.py [--messages 5000] [--sessions 20] [--json bench/results/acceptance.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg2

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYTHON = sys.executable
RELAY = [PYTHON, "-m", "relay"]
PG_URL = os.environ.get("RELAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REVIEWER = "bench.reviewer@example.org"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_tools() -> None:
    if not shutil.which("dnsmasq") and not Path("/usr/sbin/dnsmasq").exists():
        if os.geteuid() != 0:
            sys.exit("bench: the local name server of the verify run is Debian's dnsmasq-base; install it (as root)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "dnsmasq-base"], check=True, env=env, capture_output=True)
    if shutil.which("smtp-source") and shutil.which("smtp-sink"):
        return
    if os.geteuid() != 0:
        sys.exit("bench: smtp-source and smtp-sink come with Debian's postfix package; install it (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "postfix"], check=True, env=env, capture_output=True)


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"bench: a server exited early ({proc.args})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"bench: nothing listens on {port}")


@contextmanager
def process(args: list[str], port: int, **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    """A server process for the length of one measurement; always stopped afterwards."""
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            **kwargs)  # type: ignore[call-overload]
    try:
        wait_port(port, proc)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def load(port: int, recipient: str, messages: int, sessions: int, pause: int = 0) -> float:
    """smtp-source's wall time for the whole load, in seconds (`pause`: seconds each session waits
    between its messages, to offer a fixed rate instead of as much as the server takes)."""
    start = time.perf_counter()
    paced = ["-w", str(pause)] if pause else []
    subprocess.run(["smtp-source", "-l", "5000", "-m", str(messages), "-s", str(sessions), *paced, "-f", REVIEWER,
                    "-t", recipient, f"127.0.0.1:{port}"], check=True, capture_output=True, timeout=900)
    return time.perf_counter() - start


def bare(messages: int, sessions: int, loop: str = "asyncio") -> float:
    port = free_port()
    with process([PYTHON, str(HERE / "bare_smtp.py"), str(port), loop], port):
        return messages / load(port, "anyone@relay.test", messages, sessions)


def bare_both(messages: int, sessions: int) -> dict[str, float]:
    """The bare server on both event loops: the relay runs on uvloop, so the baseline is the
    faster of the two (the ratio gains nothing from the loop alone)."""
    return {loop: bare(messages, sessions, loop) for loop in ("asyncio", "uvloop")}


def fresh_postgres() -> str:
    name = f"relay_bench_{os.getpid()}"
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def drop_postgres(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


def relay_settings(folder: Path, port: int, sink_port: int, database: str, inbound: str = "",
                   auth: str = '[auth]\nmode = "off"\n', key: str = "") -> Path:
    """The relay's production settings for a bench run; only the per-conversation rate limit is
    lifted (the whole load is one conversation)."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = folder / "settings.toml"
    settings.write_text(
        f'[relay]\ndomain = "relay.test"\ntemplates = "{REPO / "templates"}"\n'
        f'[inbound]\nport = {port}\n{inbound}[outbound]\nurl = "smtp://127.0.0.1:{sink_port}"\n'
        f'[storage]\ndatabase = "{database}"\nkey = "{key}"\n[limits]\nmessages_per_case_per_hour = 1000000\n'
        f'[log]\nfile = "relay.log"\nstderr = false\n[api]\nport = {free_port()}\n{auth}')
    return settings


def shared_key(folder: Path) -> str:
    """A storage key for relays that share one database (each would otherwise make its own in its
    folder, and the second would be refused): `[storage] key` naming it."""
    import base64
    import secrets
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "storage.key"
    if not path.exists():
        path.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
        path.chmod(0o600)
    return f"file:{path}"


def smtp_sink(port: int) -> list[str]:
    """Postfix's smtp-sink on `port` (it refuses to run as root without dropping privileges)."""
    return ["smtp-sink", *(["-u", "nobody"] if os.geteuid() == 0 else []), f"127.0.0.1:{port}", "1000"]


def open_bench_case(settings: Path, review: str, env: dict[str, str]) -> str:
    """Open the one conversation the load answers; returns the address the reviewer writes to."""
    opened = subprocess.run([*RELAY, "--config", str(settings), "open-case", "--review-id", review,
                             "--business-id", f"B-{review}", "--business-name", "Bench Shop", "--business-email",
                             "shop@bench.example", "--reviewer-email", REVIEWER, "--reviewer-name", "B.",
                             "--message", "Order number?"], check=True, capture_output=True, text=True,
                            cwd=settings.parent, env=env)
    return str(json.loads(opened.stdout)["reviewer_address"])


def delivered(log: Path) -> tuple[dict[str, datetime], dict[str, datetime]]:
    """(accepted, forward delivered) times by queue id, from the relay's own log."""
    accepted: dict[str, datetime] = {}
    forwarded: dict[str, datetime] = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        when = datetime.fromisoformat(entry["ts"].replace("Z", "+00:00"))
        if entry["event"] == "inbound.accepted":
            accepted[entry["qid"]] = when
        elif entry["event"] == "delivery.sent" and entry["msg"].startswith("forward "):
            if entry["qid"] in forwarded:
                sys.exit(f"bench: forward {entry['qid']} was delivered twice")
            forwarded[entry["qid"]] = when
    return accepted, forwarded


def relay(database: str, messages: int, sessions: int, folder: Path, pause: int = 0,
          auth: str = '[auth]\nmode = "off"\n', key: str = "", inbound: str = "") -> dict[str, float]:
    """Acceptance rate, then end to end: time until the last forward reached the sink, and the
    latency from each 250 to its delivery (both read from the relay's log)."""
    sink_port, port = free_port(), free_port()
    settings = relay_settings(folder, port, sink_port, database, inbound=inbound, auth=auth, key=key)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = folder / "relay.log"
    with process(smtp_sink(sink_port), sink_port, cwd=folder), \
            process([*RELAY, "--config", str(settings), "serve"], port, cwd=folder, env=env):
        recipient = open_bench_case(settings, "R-bench", env)
        if "workers" in inbound:
            time.sleep(2.0)  # every worker listening, not only the first
        started = datetime.now(UTC)
        rate = messages / load(port, recipient, messages, sessions, pause)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            accepted, forwarded = delivered(log)
            if len(forwarded) >= len(accepted) >= messages:
                break
            time.sleep(0.5)
    refused = sum('"inbound.refused"' in line for line in log.read_text().splitlines())
    if refused or len(accepted) != messages or set(forwarded) != set(accepted):
        sys.exit(f"bench: {len(accepted)} accepted, {len(forwarded)} forwarded, {refused} refused; see {log}")
    latencies = sorted((forwarded[q] - accepted[q]).total_seconds() for q in accepted)
    e2e = (max(forwarded.values()) - started).total_seconds()
    return {"accept_msgs_per_s": rate, "e2e_s": e2e, "forwards_per_s": messages / e2e,
            "latency_p50_s": latencies[len(latencies) // 2], "latency_p99_s": latencies[int(len(latencies) * 0.99)]}


def verified(messages: int, sessions: int, tmp: Path) -> dict[str, float]:
    """The SQLite run with `[auth] mode = "verify"`: SPF and DMARC of every answer looked up at a
    local name server (dnsmasq, as the tests run it) that publishes an SPF record for the
    reviewer's domain and DMARC p=reject, so each message passes by aligned SPF."""
    sys.path.insert(0, str(REPO))
    from tests.helpers.dns import DnsServer
    server = DnsServer(tmp / "dns")
    try:
        domain = REVIEWER.split("@")[1]
        server.zone(domain, {"@": [("TXT", "v=spf1 ip4:127.0.0.1 -all")], "_dmarc": [("TXT", "v=DMARC1; p=reject")]})
        (tmp / "verify").mkdir()
        return relay(f"sqlite:///{tmp}/verify/relay.db", messages, sessions, tmp / "verify",
                     auth=f'[auth]\nmode = "verify"\n[dns]\nnameservers = ["{server.nameserver}"]\n')
    finally:
        server.close()


def scale_out(database: str, messages: int, sessions: int, folder: Path) -> dict[str, float]:
    """Two `relay serve` on one PostgreSQL database, the load split between them: total throughput,
    and every forward and the contact request delivered exactly once across both."""
    sink_port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    configs = []
    for name in ("one", "two"):
        port = free_port()
        configs.append((relay_settings(folder / name, port, sink_port, database, key=shared_key(folder)), port))
    with process(smtp_sink(sink_port), sink_port, cwd=folder), \
            process([*RELAY, "--config", str(configs[0][0]), "serve"], configs[0][1], cwd=folder / "one", env=env), \
            process([*RELAY, "--config", str(configs[1][0]), "serve"], configs[1][1], cwd=folder / "two", env=env):
        recipient = open_bench_case(configs[0][0], "R-scale", env)
        started = time.perf_counter()
        loads = [subprocess.Popen(["smtp-source", "-l", "5000", "-m", str(messages // 2), "-s", str(sessions // 2),
                                   "-f", REVIEWER, "-t", recipient, f"127.0.0.1:{port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _, port in configs]
        for proc in loads:
            if proc.wait(900) != 0:
                sys.exit("bench: smtp-source failed in the scale-out run")
        elapsed = time.perf_counter() - started
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            logs = [delivered(config.parent / "relay.log") for config, _ in configs]
            accepted = {**logs[0][0], **logs[1][0]}
            forwarded = [q for _, sent in logs for q in sent]
            if len(forwarded) >= len(accepted) >= messages // 2 * 2:
                break
            time.sleep(0.5)
    requests = sum(line.count('"msg": "contact_request delivered') for config, _ in configs
                   for line in (config.parent / "relay.log").read_text().splitlines())
    if len(forwarded) != len(set(forwarded)) or set(forwarded) != set(accepted) or requests != 1:
        sys.exit(f"bench: scale-out delivered {len(forwarded)} forwards for {len(accepted)} accepted "
                 f"({len(set(forwarded))} distinct), contact request {requests} times")
    return {"accept_msgs_per_s": len(accepted) / elapsed, "forwards_exactly_once": len(forwarded)}


def half_load(full: float, tmp: Path) -> dict[str, dict[str, float]]:
    """Latency from 250 to delivery below full load, in two ways, each with its `load_fraction`
    (its rate over the full SQLite rate):

    - paced: half as many sessions as the relay forwards a second at full speed, each pausing a
      second between its messages (many independent senders). smtp-source cannot pace many
      sessions finely: even a bare server sees no more than about 150 a second from 340 such
      sessions, so this stays below half (about a third here);
    - back to back: the fewest sessions sending without pause that reach at least 0.45 of full
      (one, then two, ... at most four runs), so the latency is measured at half the load or more.
    """
    paced_sessions = max(1, round(full / 2))
    folder = tmp / "paced"
    folder.mkdir()
    paced = relay(f"sqlite:///{folder}/relay.db", paced_sessions * 15, paced_sessions, folder, pause=1)
    paced["load_fraction"] = paced["accept_msgs_per_s"] / full
    for sessions in range(1, 5):
        folder = tmp / f"back-to-back-{sessions}"
        folder.mkdir()
        steady = relay(f"sqlite:///{folder}/relay.db", max(1500, round(full * 4)), sessions, folder)
        steady["load_fraction"] = steady["accept_msgs_per_s"] / full
        steady["sessions"] = sessions
        if steady["load_fraction"] >= 0.45:
            break
    return {"relay_sqlite_paced_sessions": paced, "relay_sqlite_half_load": steady}


def key_off(messages: int, sessions: int, tmp: Path) -> dict[str, dict[str, float]]:
    """The SQLite and PostgreSQL runs again with `[storage] key = "off"` (values stored in the
    clear): what sealing personal data at rest costs, measured in the same run."""
    runs = {}
    (tmp / "sqlite-off").mkdir()
    runs["relay_sqlite_key_off"] = relay(f"sqlite:///{tmp}/sqlite-off/relay.db", messages, sessions,
                                         tmp / "sqlite-off", key="off")
    pg = fresh_postgres()
    try:
        (tmp / "pg-off").mkdir()
        runs["relay_postgresql_key_off"] = relay(pg, messages, sessions, tmp / "pg-off", key="off")
    finally:
        drop_postgres(pg)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "acceptance.json")
    parser.add_argument("--only", choices=["all", "encryption"], default="all",
                        help="encryption: only the SQLite and PostgreSQL runs with the storage key on and off")
    args = parser.parse_args()
    if args.only == "encryption":
        encryption_only(args.messages, args.sessions, args.json)
        return
    ensure_tools()
    runs: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        # the bare baseline before and after the relay runs: the machine's speed drifts within a
        # run, and the ratios use the faster of the two (never flattering the relay)
        bare_runs = [bare_both(args.messages, args.sessions)]
        (Path(tmp) / "sqlite").mkdir()
        runs["relay_sqlite"] = relay(f"sqlite:///{tmp}/sqlite/relay.db", args.messages, args.sessions,
                                     Path(tmp) / "sqlite")
        runs["relay_sqlite_auth_verify"] = verified(args.messages, args.sessions, Path(tmp))
        pg = fresh_postgres()
        try:
            (Path(tmp) / "pg").mkdir()
            runs["relay_postgresql"] = relay(pg, args.messages, args.sessions, Path(tmp) / "pg")
        finally:
            drop_postgres(pg)
        pg = fresh_postgres()
        try:
            scaled = scale_out(pg, args.messages, args.sessions, Path(tmp) / "scale")
        finally:
            drop_postgres(pg)
        runs.update(half_load(runs["relay_sqlite"]["forwards_per_s"], Path(tmp)))
        runs.update(key_off(args.messages, args.sessions, Path(tmp)))
        bare_runs.append(bare_both(args.messages, args.sessions))
    bare_rates = [rate for run in bare_runs for rate in run.values()]
    base = max(bare_rates)
    report = {"measured": datetime.now(UTC).isoformat(timespec="seconds"), "messages": args.messages,
              "sessions": args.sessions, "message_bytes": 5000, "cores": os.cpu_count(),
              "bare_aiosmtpd_msgs_per_s": round(base, 1),
              "bare_aiosmtpd_runs_msgs_per_s": [{loop: round(rate, 1) for loop, rate in run.items()}
                                                for run in bare_runs],
              "runs": {name: {k: round(v, 3) for k, v in run.items()} for name, run in runs.items()},
              "ratio_sqlite": round(runs["relay_sqlite"]["accept_msgs_per_s"] / base, 3),
              "ratio_postgresql": round(runs["relay_postgresql"]["accept_msgs_per_s"] / base, 3),
              "ratio_sqlite_auth_verify": round(runs["relay_sqlite_auth_verify"]["accept_msgs_per_s"] / base, 3),
              "scale_out_two_instances_postgresql": {k: round(v, 1) for k, v in scaled.items()},
              **encryption_costs(runs)}
    print(f"{'target':<28}{'accept/s':>10}{'ratio':>7}{'forwards/s':>12}{'e2e s':>8}{'p50 s':>8}{'p99 s':>8}")
    print(f"{'bare_aiosmtpd':<28}{base:>10.1f}{1:>7.2f}   (fastest of " + ", ".join(
        f"{rate:.0f} on {loop}" for run in bare_runs for loop, rate in run.items()) + ")")
    for name, run in runs.items():
        print(f"{name:<28}{run['accept_msgs_per_s']:>10.1f}{run['accept_msgs_per_s'] / base:>7.2f}"
              f"{run['forwards_per_s']:>12.1f}{run['e2e_s']:>8.1f}{run['latency_p50_s']:>8.2f}"
              f"{run['latency_p99_s']:>8.2f}")
    print(f"{'':<28}(below full load: paced sessions offered {runs['relay_sqlite_paced_sessions']['load_fraction']:.2f} "
          f"of the full SQLite rate, {int(runs['relay_sqlite_half_load']['sessions'])} back-to-back session(s) "
          f"{runs['relay_sqlite_half_load']['load_fraction']:.2f})")
    print(f"{'':<28}(sealing at rest costs: {_costs_line(runs)})")
    print(f"{'2 x relay, pg':<28}{scaled['accept_msgs_per_s']:>10.1f}{scaled['accept_msgs_per_s'] / base:>7.2f}"
          f"   every forward delivered exactly once ({int(scaled['forwards_exactly_once'])})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.json}")


def encryption_costs(runs: dict[str, dict[str, float]]) -> dict[str, float]:
    """Acceptance with the storage key on, as a fraction of the same run with it off."""
    return {f"encrypted_vs_clear_{kind}": round(runs[f"relay_{kind}"]["accept_msgs_per_s"]
                                                / runs[f"relay_{kind}_key_off"]["accept_msgs_per_s"], 3)
            for kind in ("sqlite", "postgresql")}


def _costs_line(runs: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{kind} {value:.2f} of the clear-text rate" for kind, value in
                     ((k.removeprefix("encrypted_vs_clear_"), v) for k, v in encryption_costs(runs).items()))


def encryption_only(messages: int, sessions: int, out: Path) -> None:
    """`--only encryption`: the relay on SQLite and PostgreSQL, sealed (the default) and in the clear,
    alternating so that a drift of the machine's speed hits both alike."""
    runs: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        (Path(tmp) / "sqlite").mkdir()
        runs.update(key_off(messages, sessions, Path(tmp)))
        runs["relay_sqlite"] = relay(f"sqlite:///{tmp}/sqlite/relay.db", messages, sessions, Path(tmp) / "sqlite")
        pg = fresh_postgres()
        try:
            (Path(tmp) / "pg").mkdir()
            runs["relay_postgresql"] = relay(pg, messages, sessions, Path(tmp) / "pg")
        finally:
            drop_postgres(pg)
    print(f"{'target':<28}{'accept/s':>10}{'forwards/s':>12}{'p50 s':>8}{'p99 s':>8}")
    for name, run in runs.items():
        print(f"{name:<28}{run['accept_msgs_per_s']:>10.1f}{run['forwards_per_s']:>12.1f}"
              f"{run['latency_p50_s']:>8.2f}{run['latency_p99_s']:>8.2f}")
    print(f"sealing at rest: {_costs_line(runs)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"measured": datetime.now(UTC).isoformat(timespec="seconds"), "messages": messages,
                               "runs": {n: {k: round(v, 3) for k, v in r.items()} for n, r in runs.items()},
                               **encryption_costs(runs)}, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
