"""The test hosts, made once for the module's scenarios and removed after (even on failure).

Where this machine does not allow network namespaces (not root, ``ip netns add`` refused) the
scenarios skip saying so; in CI (CI=true) they fail instead: CI runs as root here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hosts.harness import HOSTS, Hosts
from tests.hosts.netns import Network, unavailable_reason
from tests.hosts.services import PostgresOnHost, pg_bin_dir, redis_on_host
from tests.support.missing import missing

CI_MUST_RUN = "the several-hosts scenarios must run"  # CI runs as root, PostgreSQL installed


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    reason = unavailable_reason()
    if reason:
        missing(reason, CI_MUST_RUN)
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        missing("no PostgreSQL server programs under /usr/lib/postgresql/*/bin", CI_MUST_RUN)
    logs = tmp_path_factory.mktemp("hosts")
    net = Network()
    made: Hosts | None = None
    try:
        net.create(HOSTS)
        made = Hosts(
            net, PostgresOnHost(net["db"], bin_dir, logs), redis_on_host(net["db"], logs / "redis")
        )
        made.postgres.start()
        made.broker.start()
        yield made
    finally:
        if made is not None:
            made.stop()
        else:
            net.remove()
