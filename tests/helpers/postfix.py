"""A real Postfix in front of the relay, as docs/operations.md ("Postfix as the MX") sets it up.

A private Postfix instance: its own main.cf and master.cf, queue and log in a directory of
pytest's, listening on loopback only. Its data directory (the master's lock file, caches) is a
temporary directory of its own elsewhere, removed at the end: Postfix opens it as the unprivileged
postfix user, who cannot reach into pytest's directories (mode 0700, owned by root); the rest
Postfix reaches as root or relative to its queue directory. It is started with
`postfix -c DIR start`; as root Postfix does not ask the system's main.cf to list DIR in
`alternate_config_directories` (that check is for unprivileged callers), so the system's
/etc/postfix is neither read for this nor changed. Only the processes this instance started are
stopped, by their ids.

Two smtpd services stand for the two setups the docs compare:

- `filtered_port`: the recipe, the relay as before-queue content filter (`smtpd_proxy_filter`):
  the relay's answer to each command is the client's answer, and nothing is queued.
- `plain_port`: the setup that causes backscatter, Postfix accepting first and handing the message
  to the relay by `transport_maps` afterwards.

Whatever Postfix itself sends elsewhere (a bounce, a postmaster notice) goes to
`default_transport`, a capturing sink of the test's, so a bounce is seen rather than lost in DNS.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers.environment import free_port

# not under the relay domain: Postfix counts subdomains of relay_domains as relayed too, and its
# own notices to postmaster@$myhostname would then go to the relay rather than to default_transport
HOSTNAME = "mx.test"
# where Debian puts the commands; PATH of a test run may lack the sbin directories
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
# queue directories that hold messages (or their delivery logs) while Postfix has any
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt", "bounce", "defer", "trace")

Reply = tuple[int, str]


def command(name: str) -> str | None:
    return shutil.which(name, path=SBIN)


def unavailable() -> str | None:
    """Why a Postfix instance cannot run here (None when it can); tests fail with this, since
    tests/run installs Postfix and the suite runs as root."""
    if os.geteuid() != 0:
        return "the Postfix tests need root (Postfix's master runs as root and its daemons as postfix)"
    if command("postfix") is None or command("postqueue") is None:
        return "Postfix is not installed (tests/run installs Debian's postfix package)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "there is no 'postfix' user (Debian's postfix package creates it)"
    return None


def main_cf(root: Path, data: Path, domain: str, relay_port: int, elsewhere_port: int) -> str:
    return f"""\
# A test's own Postfix, loopback only.
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {HOSTNAME}
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.1/32
relay_domains = {domain}
# the test's client comes from 127.0.0.1 too: it must be treated as a stranger
smtpd_relay_restrictions = reject_unauth_destination
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
# the plain setup's hand-over, and where everything else (bounces) goes
transport_maps = inline:{{ {domain}=smtp:[127.0.0.1]:{relay_port} }}
default_transport = smtp:[127.0.0.1]:{elsewhere_port}
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
"""


def master_cf(filtered_port: int, plain_port: int, relay_port: int) -> str:
    services = [
        "pickup unix n - n 60 1 pickup", "cleanup unix n - n - 0 cleanup", "qmgr unix n - n 300 1 qmgr",
        "rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce",
        "defer unix - - n - 0 bounce", "trace unix - - n - 0 bounce", "verify unix - - n - 1 verify",
        "flush unix n - n 1000? 0 flush", "proxymap unix - - n - - proxymap",
        "smtp unix - - n - - smtp", "relay unix - - n - - smtp", "showq unix n - n - - showq",
        "error unix - - n - - error", "retry unix - - n - - error", "discard unix - - n - - discard",
        "anvil unix - - n - 1 anvil", "scache unix - - n - 1 scache", "postlog unix-dgram n - n - 1 postlogd",
    ]
    return (
        "# The recipe: the relay is the before-queue content filter of the public smtpd.\n"
        f"127.0.0.1:{filtered_port} inet n - n - - smtpd\n"
        f"  -o smtpd_proxy_filter=127.0.0.1:{relay_port}\n"
        "  -o syslog_name=postfix/filtered\n"
        "# The setup that causes backscatter: accept, queue, hand over by transport_maps.\n"
        f"127.0.0.1:{plain_port} inet n - n - - smtpd\n"
        "  -o syslog_name=postfix/plain\n"
        + "".join(line + "\n" for line in services)
    )


class Postfix:
    """One private Postfix instance; `start()`, then `stop()` in teardown."""

    def __init__(self, root: Path, domain: str, relay_port: int, elsewhere_port: int) -> None:
        self.root = root
        self.conf = root / "conf"
        self.queue = root / "queue"
        self.maillog = root / "maillog"
        self.hostname = HOSTNAME
        self.filtered_port = free_port()
        self.plain_port = free_port()
        self.conf.mkdir(parents=True)
        self.queue.mkdir(mode=0o755)  # Postfix wants it to exist, owned by root; it fills it itself
        self.scratch = Path(tempfile.mkdtemp(prefix="relay-test-postfix-"))
        self.scratch.chmod(0o711)  # the postfix user may pass, not list
        (self.conf / "main.cf").write_text(main_cf(root, self.scratch / "data", domain, relay_port, elsewhere_port))
        (self.conf / "master.cf").write_text(master_cf(self.filtered_port, self.plain_port, relay_port))
        self.master: int | None = None
        self.log_from = 0

    def _run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        env = {key: value for key, value in os.environ.items() if key != "MAIL_CONFIG"}
        env["PATH"] = SBIN
        return subprocess.run([*args], capture_output=True, text=True, timeout=timeout, env=env, check=False)

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run(command("postfix") or "postfix", "-c", str(self.conf), *args)

    def start(self, timeout: float = 20) -> None:
        """`postfix start` (which first runs what `postfix check` runs, and creates the queue
        directories: most of the two seconds a start takes), then wait until both smtpd services
        greet."""
        started = self.postfix("start")
        self.master = self._master_pid()
        if started.returncode != 0:
            raise RuntimeError(f"postfix start failed: {started.stderr.strip()}\n{self.log()}")
        deadline = time.monotonic() + timeout
        for port in (self.filtered_port, self.plain_port):
            while not self._greets(port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Postfix does not answer on 127.0.0.1:{port}\n{self.log()}")
                time.sleep(0.05)

    def _greets(self, port: int) -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
                return smtp.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False

    def _master_pid(self) -> int | None:
        try:
            return int((self.queue / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 15) -> None:
        """`postfix stop`, and wait for the master and its children to exit; whichever of them has
        not exited by the deadline is killed by its id (never by name: the machine may run a
        Postfix of its own)."""
        master = self.master or self._master_pid()
        if master is not None:
            ours = {master, *children(master)}
            self.postfix("stop")
            deadline = time.monotonic() + timeout
            while any(alive(pid) for pid in ours) and time.monotonic() < deadline:
                time.sleep(0.05)
            for pid in ours:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            self.master = None
        shutil.rmtree(self.scratch, ignore_errors=True)

    def queued(self) -> list[str]:
        """Files in the queue directories that hold messages: none when Postfix holds no mail."""
        return sorted(str(path.relative_to(self.queue)) for name in QUEUES
                      for path in (self.queue / name).rglob("*") if path.is_file())

    def wait_until_empty(self, timeout: float = 20) -> list[str]:
        """Wait (bounded) for Postfix to have delivered everything it queued; what is left."""
        deadline = time.monotonic() + timeout
        while (left := self.queued()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return left

    def mailq(self) -> str:
        """`postqueue -p`, what an admin would look at."""
        result = self._run(command("postqueue") or "postqueue", "-c", str(self.conf), "-p")
        return (result.stdout + result.stderr).strip()

    def mark(self) -> None:
        """Let `log()` start here: one instance serves several tests, each reads its own lines."""
        self.log_from = len(self._read_log())

    def log(self) -> str:
        """Postfix's log lines since `mark()`."""
        return self._read_log()[self.log_from:].decode(errors="replace")

    def _read_log(self) -> bytes:
        try:
            return self.maillog.read_bytes()
        except OSError:
            return b""


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its parent has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(parent: int) -> list[int]:
    """The processes whose parent is `parent` (the daemons a Postfix master started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


def session(port: int, mail_from: str, rcpts: list[str], raw: bytes) -> list[Reply]:
    """One SMTP transaction as a sending server makes it: every reply in order (MAIL, each RCPT,
    then DATA's final reply if any recipient was accepted), so a test sees where a refusal came."""
    replies: list[Reply] = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        code, text = smtp.mail(mail_from)
        replies.append((code, text.decode(errors="replace")))
        if code >= 400:
            return replies
        for rcpt in rcpts:
            code, text = smtp.rcpt(rcpt)
            replies.append((code, text.decode(errors="replace")))
        if not any(code == 250 for code, _ in replies[1:]):
            return replies
        try:
            code, answer = smtp.data(raw)
            replies.append((code, answer.decode(errors="replace")))
        except smtplib.SMTPResponseException as exc:  # a refusal of DATA itself
            error = exc.smtp_error
            replies.append((exc.smtp_code, error.decode(errors="replace") if isinstance(error, bytes) else error))
    return replies


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False
