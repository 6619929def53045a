"""A real DNS server for tests: Debian's dnsmasq, answering on a loopback port of its own (UDP and
TCP) from the records a test gives it, and from nothing else.

    dns = DnsServer(tmp_path / "dns")
    dns.zone("example.org", {"@": [("TXT", "v=spf1 ip4:127.0.0.1 -all"), ("MX", "10 mail")],
                             "mail": [("A", "127.0.0.1")],
                             "relay._domainkey": [("TXT", "v=DKIM1; k=rsa; p=...")]})
    dns.nameserver          # "127.0.0.1:PORT", for [dns] nameservers
    dns.resolver()          # dnspython's resolver, asking only this server

Names are relative to the zone (`@` is the zone itself) unless they end with a dot. A TXT value
longer than 255 bytes is split into strings as DNS needs (a tuple gives the strings as they are);
MX, CNAME, PTR and SRV targets without a final dot are relative to the zone too. Served: A, AAAA,
MX, TXT, CNAME, PTR, SRV. A name in a zone without records is NXDOMAIN, a type a name lacks NODATA,
a name outside every zone REFUSED: nothing is forwarded anywhere (`no-resolv`, no upstream
server), so no query leaves loopback.

Failures a test can cause:

- `dns.silent_zone("slow.example")`: every name in that zone times out, while the others answer
  (dnsmasq forwards the zone to a socket of this helper's that takes queries and never answers);
- `with dns.unresponsive():` the whole server stops answering (its process is stopped with
  SIGSTOP; queries time out) and answers again afterwards (SIGCONT): "DNS down, then back";
- `dns.stop()` ... `dns.start()`: nothing listens meanwhile (a query over UDP goes unanswered, as
  an unconnected socket hears nothing of the refusal; a TCP connection is refused at once).

Changing a zone restarts dnsmasq (it reads its records only at start; a start takes milliseconds)
and waits until it answers. Only the process this helper started is signalled, by its id.
`dns.queries()` lists what was asked ("TXT relay._domainkey.example.org").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import dns.exception
import dns.message
import dns.nameserver
import dns.query
import dns.resolver

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
Record = tuple[str, str | Sequence[str]]
TYPES = ("A", "AAAA", "MX", "TXT", "CNAME", "PTR", "SRV")


def dnsmasq() -> str | None:
    return shutil.which("dnsmasq", path=SBIN)


def unavailable() -> str | None:
    """Why the server cannot run here (None when it can): tests fail with this, since tests/run
    installs Debian's dnsmasq-base."""
    if dnsmasq() is None:
        return "dnsmasq is not installed (tests/run installs Debian's dnsmasq-base)"
    return None


def free_udp_and_tcp_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no loopback port is free for both UDP and TCP")


class Blackhole:
    """A UDP and a TCP socket on one loopback port that take queries and never answer them."""

    def __init__(self) -> None:
        self.port = free_udp_and_tcp_port()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(64)  # connections complete in the kernel and are never read

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


class DnsServer:
    def __init__(self, folder: Path, address: str = "127.0.0.1") -> None:
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.address = address
        self.port = free_udp_and_tcp_port()
        self.zones: dict[str, list[str]] = {}  # zone -> its dnsmasq lines
        self.blackhole: Blackhole | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "dnsmasq.log"
        self.start()

    # --- what it serves ---------------------------------------------------------------------------

    @property
    def nameserver(self) -> str:
        """The server as `[dns] nameservers` names it."""
        return f"{self.address}:{self.port}"

    def zone(self, name: str, records: Mapping[str, Iterable[Record]]) -> None:
        """Serve zone `name` with these records, instead of whatever it held before."""
        zone = name.rstrip(".").lower()
        lines = [f"local=/{zone}/"]
        for owner, entries in records.items():
            fqdn = _absolute(owner, zone)
            lines += [_line(fqdn, kind.upper(), value, zone) for kind, value in entries]
        self.zones[zone] = lines
        self.restart()

    def silent_zone(self, name: str) -> None:
        """Every query for a name in zone `name` goes unanswered (the asker times out)."""
        if self.blackhole is None:
            self.blackhole = Blackhole()
        zone = name.rstrip(".").lower()
        self.zones[zone] = [f"server=/{zone}/127.0.0.1#{self.blackhole.port}"]
        self.restart()

    def remove(self, name: str) -> None:
        """Stop serving zone `name` (its names are then REFUSED)."""
        self.zones.pop(name.rstrip(".").lower(), None)
        self.restart()

    # --- the process -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start dnsmasq with the zones given so far and wait until it answers."""
        assert self.process is None, "already running"
        config = self.folder / "dnsmasq.conf"
        config.write_text("\n".join([
            "# a test's DNS server: loopback only, its own records only, nothing forwarded but silent zones",
            f"listen-address={self.address}", f"port={self.port}", "bind-interfaces",
            "no-resolv", "no-hosts", "no-poll", "cache-size=0", "no-negcache", "local-ttl=0",
            *[line for lines in self.zones.values() for line in lines], ""]))
        command = [dnsmasq() or "dnsmasq", f"--conf-file={config}", "--keep-in-foreground", "--pid-file=",
                   "--log-facility=-", "--log-queries"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._end()
                tail = self.log.read_text(errors="replace")[-800:]
                raise RuntimeError(f"dnsmasq did not start on {self.nameserver}: {tail}")
            time.sleep(0.02)

    def stop(self) -> None:
        """End dnsmasq: nothing listens on its port until `start()`."""
        self._end()

    def restart(self) -> None:
        if self.process is not None:
            self._end()
            self.start()

    @contextlib.contextmanager
    def unresponsive(self) -> Iterator[None]:
        """Within the block the server takes queries and answers none (its process is stopped);
        afterwards it answers again."""
        assert self.process is not None, "not running"
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        self._end()
        if self.blackhole is not None:
            self.blackhole.close()
            self.blackhole = None

    def _end(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def _answers(self) -> bool:
        """Whether the server answers a query at all (REFUSED counts: it is listening)."""
        try:
            dns.query.udp(dns.message.make_query("ready.invalid.", "A"), self.address, timeout=0.05, port=self.port)
        except (OSError, dns.exception.Timeout):
            return False
        return True

    # --- asking it ---------------------------------------------------------------------------------

    def resolver(self, timeout: float = 2.0) -> dns.resolver.Resolver:
        """dnspython's resolver asking only this server, giving up after `timeout` seconds."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(self.address, self.port)]
        resolver.lifetime = resolver.timeout = timeout
        return resolver

    def txt(self, name: str) -> list[str]:
        """The TXT records at `name`, each one's strings joined; [] for NXDOMAIN or NODATA."""
        try:
            answer = self.resolver().resolve(name, "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        return [b"".join(r.strings).decode() for r in answer]

    def dkim_dnsfunc(self, timeout: float = 2.0) -> object:
        """A `dnsfunc` for dkimpy's verify that asks this server (dkimpy would ask the system's)."""
        def lookup(name: bytes, timeout: float = timeout) -> bytes | None:
            try:
                answer = self.resolver(timeout).resolve(name.decode(), "TXT", search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                return None
            return b"".join(answer[0].strings)
        return lookup

    def queries(self) -> list[str]:
        """What was asked so far, oldest first: "TXT relay._domainkey.example.org"."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if "query[" in line:
                kind, _, rest = line.split("query[", 1)[1].partition("] ")
                found.append(f"{kind} {rest.split(' from ')[0]}")
        return found


def _absolute(name: str, zone: str) -> str:
    if name in ("@", ""):
        return zone
    if name.endswith("."):
        return name.rstrip(".").lower()
    return f"{name}.{zone}".lower()


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _strings(value: str | Sequence[str]) -> list[str]:
    """A TXT value as the strings of its record: as given when a sequence, else 255-byte pieces."""
    if not isinstance(value, str):
        return list(value)
    data = value.encode()
    return [data[i:i + 255].decode() for i in range(0, len(data), 255)] or [""]


def _line(fqdn: str, kind: str, value: str | Sequence[str], zone: str) -> str:
    """One record as a dnsmasq configuration line."""
    if kind == "TXT":
        return f"txt-record={fqdn}," + ",".join(_quoted(s) for s in _strings(value))
    assert isinstance(value, str), f"{kind} takes one string"
    parts = value.split()
    if kind in ("A", "AAAA"):
        return f"host-record={fqdn},{value}"  # dnsmasq answers the address's PTR too
    if kind == "MX":
        preference, target = parts
        return f"mx-host={fqdn},{_absolute(target, zone)},{preference}"
    if kind == "CNAME":
        return f"cname={fqdn},{_absolute(value, zone)}"
    if kind == "PTR":
        return f"ptr-record={fqdn},{_absolute(value, zone)}"
    if kind == "SRV":
        priority, weight, port, target = parts
        return f"srv-host={fqdn},{_absolute(target, zone)},{port},{priority},{weight}"
    raise ValueError(f"{kind}: this test server serves {', '.join(TYPES)}")
