"""Test hosts as Linux network namespaces: one bridge in the root namespace, one veth pair per
host, a private /24 of the run's own (10.77.N.0/24). The test process (root namespace) reaches
every host through the bridge; the hosts reach each other the same way.

Names carry the creating process's id (``rrrh-PID-db``, interfaces ``rhPIDbr``, ``rhPIDv3``), so
parallel runs never collide and what a killed run left behind is found and removed by the next
one (``remove_stale``). Faults, both silent (packets dropped, nothing refused, as a pulled cable
or a dead switch port does):

- ``cut(host)``: the host's link down (every peer);
- ``cut_between(a, b)``: only between two hosts, both directions, by a permanent neighbour
  entry on each side naming a MAC nobody has (this kernel has no iptables or tc actions).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from rrr.pids import pid_alive

PREFIX = "rrrh-"  # namespaces
IF_PREFIX = "rh"  # interfaces (15 characters at most: rh + pid + br/vN)
SUBNET_FIRST = "10.77"
NOWHERE_MAC = "02:00:00:00:00:01"  # a locally administered address no interface has
CLONE_NEWNET = 0x40000000
SUBNET_LOCK = "/tmp/rrr-hosts-subnet.lock"

T = TypeVar("T")


class NetnsUnavailable(RuntimeError):
    """The machine does not let this process make network namespaces (not root, no ip)."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be made here, or None when they can (tried for real)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run as root to run these scenarios"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        made = ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        return "the ip command (iproute2) is not installed"
    if made.returncode != 0:
        return f"ip netns add is not allowed here: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def _kill_namespace_processes(ns: str) -> None:
    pids = ip("netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_stale() -> list[str]:
    """Remove the namespaces and interfaces of runs whose process is gone; returns their names."""
    removed = []
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(rf"{PREFIX}(\d+)-\w+", name)
        if match and not pid_alive(int(match.group(1))):
            _kill_namespace_processes(name)
            ip("netns", "del", name, check=False)
            removed.append(name)
    for line in ip("-o", "link", "show", check=False).stdout.splitlines():
        found = re.match(rf"\d+: ({IF_PREFIX}(\d+)(?:br|v\d+))[@:]", line)
        if found and not pid_alive(int(found.group(2))):
            ip("link", "del", found.group(1), check=False)
            removed.append(found.group(1))
    return removed


def _free_subnet() -> str:
    """A 10.77.N.0/24 no interface of this machine uses (another run's bridge, say)."""
    used = set(re.findall(r"inet 10\.77\.(\d+)\.", ip("-4", "addr", "show").stdout))
    for n in range(0, 256):
        if str(n) not in used:
            return f"{SUBNET_FIRST}.{n}"
    raise RuntimeError("every 10.77.N.0/24 is in use")


@dataclass
class Host:
    """One machine: a namespace, an address on the run's subnet, its veth pair."""

    name: str
    ns: str
    address: str
    root_if: str  # the pair's end on the bridge (root namespace)
    inner_if: str  # the pair's end inside the host
    mac: str = ""

    def command(self, argv: list[str], user: str | None = None) -> list[str]:
        """``argv`` run on this host (as ``user``, dropping root, when given), under the host's
        own host name (a UTS namespace: what a process reports as its machine is this host).
        Each step execs the next: the pid is the program's."""
        drop = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"] if user else []
        named = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.name]
        return ["ip", "netns", "exec", self.ns, *named, *drop, *argv]

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a thread of this process that has entered the host's namespace: the
        sockets it opens and the threads it starts live on this host (a namespace is per
        thread, and threads inherit their creator's)."""
        result: list[T] = []
        failure: list[BaseException] = []

        def inside() -> None:
            try:
                fd = os.open(f"/var/run/netns/{self.ns}", os.O_RDONLY)
                try:
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns into {self.ns}")
                finally:
                    os.close(fd)
                result.append(fn())
            except BaseException as exc:  # handed to the caller's thread
                failure.append(exc)

        thread = threading.Thread(target=inside, name=f"on-{self.name}")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]
        return result[0]


@dataclass
class Network:
    """The run's bridge and hosts; ``remove()`` takes everything away (processes included)."""

    run_id: str = field(default_factory=lambda: str(os.getpid()))
    subnet: str = ""
    hosts: dict[str, Host] = field(default_factory=dict)
    cuts: set[tuple[str, ...]] = field(default_factory=set)  # what heal_all() undoes

    @property
    def bridge(self) -> str:
        return f"{IF_PREFIX}{self.run_id}br"

    @property
    def gateway(self) -> str:
        return f"{self.subnet}.1"

    def create(self, names: list[str]) -> Network:
        # One run at a time picks a subnet and claims it (its bridge's address): two runs
        # starting together would otherwise both see 10.77.0.0/24 free.
        with open(SUBNET_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            remove_stale()
            self.subnet = _free_subnet()
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for number, name in enumerate(names, start=2):
            self._add_host(name, number)
        return self

    def _add_host(self, name: str, number: int) -> None:
        ns = f"{PREFIX}{self.run_id}-{name}"
        host = Host(name, ns, f"{self.subnet}.{number}", f"{IF_PREFIX}{self.run_id}v{number}",
                    f"{IF_PREFIX}{self.run_id}p{number}")  # fmt: skip
        ip("netns", "add", ns)
        self.hosts[name] = host
        ip("link", "add", host.root_if, "type", "veth", "peer", "name", host.inner_if)
        ip("link", "set", host.inner_if, "netns", ns)
        ip("link", "set", host.root_if, "master", self.bridge)
        ip("link", "set", host.root_if, "up")
        ip("-n", ns, "addr", "add", f"{host.address}/24", "dev", host.inner_if)
        ip("-n", ns, "link", "set", host.inner_if, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        link = ip("-n", ns, "-o", "link", "show", host.inner_if).stdout
        host.mac = re.search(r"link/ether ([0-9a-f:]{17})", link).group(1)  # type: ignore[union-attr]

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    # -- faults ----------------------------------------------------------------------------------
    def cut(self, name: str) -> None:
        """The host's cable pulled: its link down, packets to and from it dropped."""
        ip("link", "set", self.hosts[name].root_if, "down")
        self.cuts.add((name,))

    def restore(self, name: str) -> None:
        ip("link", "set", self.hosts[name].root_if, "up")
        self.cuts.discard((name,))

    def cut_between(self, a: str, b: str) -> None:
        """Only ``a`` and ``b`` lose each other: each sends the other's packets to a MAC nobody
        has; the bridge floods them and every host drops them."""
        for here, there in ((self.hosts[a], self.hosts[b]), (self.hosts[b], self.hosts[a])):
            ip("-n", here.ns, "neigh", "replace", there.address, "lladdr", NOWHERE_MAC,
               "dev", here.inner_if, "nud", "permanent")  # fmt: skip
        self.cuts.add((a, b))

    def heal_between(self, a: str, b: str) -> None:
        for here, there in ((self.hosts[a], self.hosts[b]), (self.hosts[b], self.hosts[a])):
            ip("-n", here.ns, "neigh", "replace", there.address, "lladdr", there.mac,
               "dev", here.inner_if, "nud", "reachable")  # fmt: skip
        self.cuts.discard((a, b))

    def heal_all(self) -> None:
        """Every cut undone: the next scenario starts on a whole network."""
        for cut in list(self.cuts):
            if len(cut) == 1:
                self.restore(cut[0])
            else:
                self.heal_between(*cut)

    @contextmanager
    def partitioned(self, a: str, b: str | None = None) -> Iterator[None]:
        """``a`` cut from everyone (or only from ``b``) for the ``with`` block."""
        if b is None:
            self.cut(a)
        else:
            self.cut_between(a, b)
        try:
            yield
        finally:
            if b is None:
                self.restore(a)
            else:
                self.heal_between(a, b)

    def kill_host(self, name: str) -> None:
        """The machine lost: its cable pulled first (its peers hear nothing, no FIN, no RST),
        then every process on it SIGKILLed. ``heal_all`` brings the (empty) host back."""
        self.cut(name)
        _kill_namespace_processes(self.hosts[name].ns)

    def remove(self) -> None:
        for host in self.hosts.values():
            _kill_namespace_processes(host.ns)
            ip("netns", "del", host.ns, check=False)
            ip("link", "del", host.root_if, check=False)
        ip("link", "del", self.bridge, check=False)
