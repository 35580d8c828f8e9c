"""The container test's own logic, without podman (part of ``make test``): what it reads from this machine's
apt and pip settings, what it changes in nginx.conf, how it reads a replica's gauge, and podman's settings file."""

from __future__ import annotations

from pathlib import Path

import pytest
from compose_stack import metric, render_nginx_conf
from deploy_files import DOCKER_DIR
from podman_harness import CONTAINERS_CONF
from podman_images import parse_pip_config, pick_mirror, pip_conf_text, pip_local_paths

INDEXTARGETS = (
    "http://mirror.invalid/debian-security/\tbookworm-security\tmain\n"
    "http://mirror.invalid/debian/\tbookworm\tcontrib\n"
    "http://mirror.invalid/debian/\tbookworm\tmain\n"
    "http://mirror.invalid/debian/\tbookworm-updates\tmain\n"
)


def test_the_mirror_is_the_one_apt_uses_for_the_suite() -> None:
    assert pick_mirror(INDEXTARGETS, "bookworm") == "http://mirror.invalid/debian"
    with pytest.raises(RuntimeError, match="no source for trixie"):
        pick_mirror(INDEXTARGETS, "trixie")


PIP_CONFIG_LIST = """\
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///srv/pypi/simple https://index.invalid/simple'
global.find-links='/srv/wheels'
global.target='/somewhere/else'
install.index-url='https://files.invalid/simple'
:env:.cert='/etc/custom-ca.pem'
:env:.default-timeout='180'
:env:.disable-pip-version-check='1'
"""


def test_pip_settings_keep_where_packages_come_from_and_env_wins() -> None:
    settings = parse_pip_config(PIP_CONFIG_LIST)
    assert settings == {
        "global": {
            "constraint": "/etc/xdg/pip/constraints.txt",
            "extra-index-url": "file:///srv/pypi/simple https://index.invalid/simple",
            "find-links": "/srv/wheels",
            "cert": "/etc/custom-ca.pem",
            "default-timeout": "180",
        },
        "install": {"index-url": "https://files.invalid/simple"},
    }
    text = pip_conf_text(settings)
    assert "[global]\n" in text and "cert = /etc/custom-ca.pem\n" in text and "target" not in text


def test_local_paths_named_by_pip_settings_are_mounted(tmp_path: Path) -> None:
    (tmp_path / "pypi" / "simple").mkdir(parents=True)
    (tmp_path / "wheels").mkdir()
    (tmp_path / "ca.pem").write_text("")
    settings = {
        "global": {
            "cert": str(tmp_path / "ca.pem"),
            "extra-index-url": f"file://{tmp_path}/pypi/simple https://index.invalid/simple",
            "find-links": f"{tmp_path}/wheels {tmp_path}/missing",
            "constraint": "relative.txt",
        }
    }
    # The index's parent: its pages link to ../../files/...; what does not exist is left out.
    assert pip_local_paths(settings) == [tmp_path / "ca.pem", tmp_path / "pypi", tmp_path / "wheels"]


def test_nginx_conf_changes_only_the_resolver_address() -> None:
    shipped = (DOCKER_DIR / "nginx.conf").read_text()
    rendered = render_nginx_conf(shipped, "10.89.0.1")
    changed = [(a, b) for a, b in zip(shipped.splitlines(), rendered.splitlines(), strict=True) if a != b]
    assert changed == [
        ("        resolver 127.0.0.11 valid=10s ipv6=off;", "        resolver 10.89.0.1 valid=10s ipv6=off;")
    ]
    with pytest.raises(ValueError, match="expected one"):
        render_nginx_conf("http {}", "10.89.0.1")


def test_a_gauge_is_read_from_the_replicas_metrics() -> None:
    exposition = (
        "# HELP augserve_streams_in_flight response streams open\n"
        "# TYPE augserve_streams_in_flight gauge\n"
        "augserve_streams_in_flight 1.0\n"
        'augserve_requests_total{method="GET",route="/readyz",status="200"} 3.0\n'
    )
    assert metric(exposition, "augserve_streams_in_flight") == 1.0
    assert metric(exposition, "augserve_streams") == 0.0, "a prefix of another name is not that name"
    assert metric("", "augserve_streams_in_flight") == 0.0


def test_podman_settings() -> None:
    tomllib = pytest.importorskip("tomllib")
    settings = tomllib.loads(CONTAINERS_CONF.read_text())
    assert settings == {"containers": {"default_ulimits": []}, "engine": {"runtime": "runc"}}
