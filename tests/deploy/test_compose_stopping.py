"""Stopping a replica in the compose stack, as found by running it (test_container_compose.py): the drain fits in
the stop grace period, and nginx finds a replica that vanished without closing its stream."""

from __future__ import annotations

import re

import yaml
from augserve.settings import Settings
from deploy_files import DOCKER_DIR

COMPOSE = yaml.safe_load((DOCKER_DIR / "compose.yaml").read_text())
NGINX_CONF = (DOCKER_DIR / "nginx.conf").read_text()


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match[1])


def test_the_drain_ends_before_the_kill() -> None:
    """SIGTERM starts the drain; SIGKILL comes after stop_grace_period, which must leave it time to finish."""
    service = COMPOSE["services"]["augserve"]
    drain = service["environment"]["AUGSERVE_DRAIN_SECONDS"]
    default = re.fullmatch(r"\$\{AUGSERVE_DRAIN_SECONDS:-(\d+)\}", drain)
    assert default, drain
    assert float(default[1]) == Settings.model_fields["drain_seconds"].default
    assert seconds(service["stop_grace_period"]) >= float(default[1]) + 5


def test_nginx_probes_idle_upstream_connections() -> None:
    assert re.search(r"^\s*proxy_socket_keepalive on;", NGINX_CONF, re.MULTILINE)
    sysctls = COMPOSE["services"]["nginx"]["sysctls"]
    # Idle this long, then this many probes this far apart go unanswered: the connection fails.
    found_after = sysctls["net.ipv4.tcp_keepalive_time"] + (
        sysctls["net.ipv4.tcp_keepalive_intvl"] * sysctls["net.ipv4.tcp_keepalive_probes"]
    )
    # well inside the client's default read timeout (120 s), which is the fallback without them
    assert found_after <= 60, found_after
