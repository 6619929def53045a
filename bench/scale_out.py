"""Scale-out: 1, 2, 4 and 8 relays on one PostgreSQL, each loaded by its own smtp-source.

For each count N, in one run: a fresh database; N `relay serve` processes (`--mode instances`: N
relays with their own settings and ports; `--mode workers`: one relay with `[inbound] workers = N`
and N loads on its one port); one smtp-source of 20 sessions per relay, answering one conversation
per relay; forwards go to Postfix's smtp-sink. Prints the acceptance rate, its ratio to one relay,
and the CPU seconds the relays, PostgreSQL and the load generators used; asserts exactly once:
every accepted answer has exactly one delivered forward, none twice, and every outbox row ends sent.

Everything that is not Python from PyPI can come from Debian packages unpacked into a folder
(`bench/prepare_tools` fills bench/tools/ on a machine with apt; no root and no install needed
where the bench runs): PostgreSQL's server is started privately from there (or from the system's
/usr/lib/postgresql) unless `--postgres URL` names a running one, smtp-source and smtp-sink from
there or the PATH.

    .venv/bin/python bench/scale_out.py [--counts 1,2,4,8] [--messages 2000] [--mode instances|workers]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from acceptance import (
    HERE,
    RELAY,
    REPO,
    REVIEWER,
    delivered,
    free_port,
    open_bench_case,
    process,
    relay_settings,
    shared_key,
)

TOOLS = HERE / "tools" / "root"
TICK = os.sysconf("SC_CLK_TCK")


def tool(name: str) -> str:
    """A program from the unpacked Debian packages, the system's PostgreSQL folder, or the PATH."""
    for folder in [TOOLS / "usr" / "sbin", TOOLS / "usr" / "bin",
                   *sorted(TOOLS.glob("usr/lib/postgresql/*/bin"), reverse=True),
                   *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]:
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if found is None:
        sys.exit(f"bench: {name} not found: run bench/prepare_tools where apt works, or install it")
    return found


def tool_env() -> dict[str, str]:
    """The environment the unpacked tools run in (their shared libraries beside them)."""
    libraries = [str(p) for p in (TOOLS / "usr" / "lib" / "x86_64-linux-gnu", TOOLS / "usr" / "lib",
                                  TOOLS / "usr" / "lib" / "postfix") if p.exists()]
    libraries += [str(p) for p in TOOLS.glob("usr/lib/postgresql/*/lib")]
    env = dict(os.environ)
    if libraries:
        env["LD_LIBRARY_PATH"] = ":".join([*libraries, env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
    return env


def as_user() -> list[str]:
    """PostgreSQL refuses to run as root: there it runs as nobody."""
    return ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []


@contextmanager
def private_postgres(folder: Path) -> Iterator[str]:
    """A PostgreSQL cluster of the bench's own in `folder`, on a free port, with the production
    settings that matter here (fsync and synchronous commit on); stopped afterwards."""
    data, port = folder / "pgdata", free_port()
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "nobody")
    env = tool_env()
    subprocess.run([*as_user(), tool("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, env=env)
    server = subprocess.Popen([*as_user(), tool("postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
                               "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=500",
                               "-c", "shared_buffers=512MB"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        for _ in range(300):
            try:
                psycopg2.connect(url).close()
                break
            except psycopg2.OperationalError:
                if server.poll() is not None:
                    sys.exit("bench: the private PostgreSQL did not start")
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(60)


def fresh_database(server: str, name: str) -> str:
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return server.rsplit("/", 1)[0] + "/" + name


def cpu_seconds(match: str) -> float:
    """CPU time (user and system, with reaped children) of the processes whose command line holds `match`."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if match not in command:
                continue
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])
    return total / TICK


def run(count: int, messages: int, sessions: int, mode: str, server: str, folder: Path) -> dict[str, float]:
    database = fresh_database(server, f"relay_scale_{count}")
    sink_port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    relays = 1 if mode == "workers" else count
    configs = []
    for n in range(relays):
        port = free_port()
        inbound = f"workers = {count}\n" if mode == "workers" else ""
        configs.append((relay_settings(folder / f"relay-{n}", port, sink_port, database, inbound=inbound,
                                       key=shared_key(folder.parent)), port))
    with ExitStack() as stack:
        stack.enter_context(process([tool("smtp-sink"), *(["-u", "nobody"] if os.geteuid() == 0 else []),
                                     f"127.0.0.1:{sink_port}", "1000"], sink_port, cwd=folder, env=tool_env()))
        for config, port in configs:
            stack.enter_context(process([*RELAY, "--config", str(config), "serve"], port, cwd=config.parent, env=env))
        time.sleep(1.0 if mode == "workers" else 0.2)  # every worker listening
        targets = [(open_bench_case(configs[n % relays][0], f"R-scale-{n}", env), configs[n % relays][1])
                   for n in range(count)]
        before = {"relay": cpu_seconds("-m relay"), "postgres": cpu_seconds("postgres")}
        reaped = os.times()  # the loads are this process's children: their CPU shows once they are waited for
        started = time.perf_counter()
        loads = [subprocess.Popen([tool("smtp-source"), "-l", "5000", "-m", str(messages), "-s", str(sessions),
                                   "-f", REVIEWER, "-t", recipient, f"127.0.0.1:{port}"], env=tool_env(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for recipient, port in targets]
        for proc in loads:
            if proc.wait(1800) != 0:
                sys.exit("bench: smtp-source failed")
        elapsed = time.perf_counter() - started
        done = os.times()
        load_cpu = done.children_user + done.children_system - reaped.children_user - reaped.children_system
        accepted, forwarded = _wait_delivered([config for config, _ in configs], messages * count)
        used = {"relay": cpu_seconds("-m relay") - before["relay"], "postgres": cpu_seconds("postgres") - before["postgres"]}
    _exactly_once(database, accepted, forwarded, count)
    return {"instances": count, "accept_msgs_per_s": len(accepted) / elapsed, "elapsed_s": elapsed,
            "cpu_relays_s": used["relay"], "cpu_postgres_s": used["postgres"], "cpu_load_s": load_cpu,
            "forwards_exactly_once": len(forwarded)}


def _wait_delivered(configs: list[Path], expected: int) -> tuple[dict[str, datetime], list[str]]:
    deadline = time.monotonic() + 1800
    while True:
        logs = [delivered(config.parent / "relay.log") for config in configs]
        accepted = {q: t for got, _ in logs for q, t in got.items()}
        forwarded = [q for _, sent in logs for q in sent]
        if len(forwarded) >= len(accepted) >= expected or time.monotonic() > deadline:
            return accepted, forwarded
        time.sleep(0.5)


def _exactly_once(database: str, accepted: dict[str, datetime], forwarded: list[str], cases: int) -> None:
    """No duplicate, no missing forward, and every row of the outbox sent (forwards and requests)."""
    conn = psycopg2.connect(database)
    with conn.cursor() as cur:
        cur.execute("SELECT kind, state, count(*) FROM delivery GROUP BY kind, state")
        rows = {(kind, state): n for kind, state, n in cur.fetchall()}
    conn.close()
    unsent = {k: n for k, n in rows.items() if k[1] != "sent"}
    if (len(forwarded) != len(set(forwarded)) or set(forwarded) != set(accepted) or unsent
            or rows.get(("forward", "sent")) != len(accepted) or rows.get(("contact_request", "sent")) != cases):
        sys.exit(f"bench: not exactly once: {len(accepted)} accepted, {len(forwarded)} forwards delivered "
                 f"({len(set(forwarded))} distinct), outbox {rows}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,2,4,8")
    parser.add_argument("--messages", type=int, default=2000, help="answers per relay")
    parser.add_argument("--sessions", type=int, default=20, help="smtp-source sessions per relay")
    parser.add_argument("--mode", choices=["instances", "workers"], default="instances")
    parser.add_argument("--postgres", help="a running PostgreSQL (URL of a database to create others from); "
                                           "default: a private one started from the tools")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "scale_out.json")
    args = parser.parse_args()
    counts = [int(n) for n in args.counts.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="relay-scale-") as tmp, ExitStack() as stack:
        os.chmod(tmp, 0o755)
        server = args.postgres or stack.enter_context(private_postgres(Path(tmp) / "pg"))
        for count in counts:
            folder = Path(tmp) / f"n{count}"
            folder.mkdir()
            runs.append(run(count, args.messages, args.sessions, args.mode, server, folder))
            print(_line(runs[-1], runs[0]), flush=True)
    one = runs[0]["accept_msgs_per_s"]
    report = {"measured": datetime.now(UTC).isoformat(timespec="seconds"), "cores": os.cpu_count(),
              "mode": args.mode, "messages_per_relay": args.messages, "sessions_per_relay": args.sessions,
              "runs": [{k: round(v, 3) for k, v in r.items()} for r in runs],
              "speedup": {str(int(r["instances"])): round(r["accept_msgs_per_s"] / one, 2) for r in runs}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.json}")


def _line(run: dict[str, float], first: dict[str, float]) -> str:
    return (f"{int(run['instances']):>2} relay(s): {run['accept_msgs_per_s']:8.1f} msg/s "
            f"({run['accept_msgs_per_s'] / first['accept_msgs_per_s']:.2f}x one), {run['elapsed_s']:.1f}s; CPU s: "
            f"relays {run['cpu_relays_s']:.1f}, postgres {run['cpu_postgres_s']:.1f}, load {run['cpu_load_s']:.1f}; "
            f"{int(run['forwards_exactly_once'])} forwards exactly once")


if __name__ == "__main__":
    main()
