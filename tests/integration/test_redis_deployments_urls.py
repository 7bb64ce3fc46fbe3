"""Redis URLs for every deployment: parsing, refusal of mistakes, and redaction."""

from __future__ import annotations

import pytest

from corral.connection import connect, is_cluster, parse_url, redact
from corral.errors import ConfigError


def test_cluster_url_with_seeds_and_acl_user() -> None:
    target = parse_url("redis+cluster://corral:p%40ss@10.0.0.1:7000,10.0.0.2:7001")
    assert target.kind == "cluster" and not target.tls
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (target.username, target.password) == ("corral", "p@ss")


def test_sentinel_url_with_service_db_and_sentinel_password() -> None:
    target = parse_url(
        "rediss+sentinel://:pw@s1:26379,s2:26379/mymaster/2?sentinel_password=sp"
        "&ssl_ca_certs=/ca.pem"
    )
    assert target.kind == "sentinel" and target.tls
    assert (target.service, target.db, target.password) == ("mymaster", 2, "pw")
    assert target.options == {"sentinel_password": "sp", "ssl_ca_certs": "/ca.pem"}


def test_single_server_db_index() -> None:
    assert parse_url("redis://h:1/3").db == 3
    assert parse_url("redis://h:1").db == 0 and parse_url("redis://h:1/").db == 0


def test_tls_options_are_typed() -> None:
    target = parse_url("rediss://h:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false"
                       "&socket_timeout=2.5")
    assert target.options == {"ssl_cert_reqs": "none", "ssl_check_hostname": False,
                              "socket_timeout": 2.5}


@pytest.mark.parametrize(("url", "message"), [
    ("http://h:1", "unsupported Redis URL"),
    ("redis://h:1/0?ssl_ca_certs=/ca.pem", "TLS options need a rediss:// URL"),
    ("redis://h:1/0?sentinel_password=x", "unknown option 'sentinel_password'"),
    ("rediss://h:1/0?ssl_ca_cert=/ca.pem", "unknown option 'ssl_ca_cert'"),
    ("rediss://h:1/0?ssl_cert_reqs=maybe", "must be required, optional or none"),
    ("redis://h:1/0?socket_timeout=-1", "socket_timeout"),
    ("redis+cluster://h:1/2", "only database 0"),
    ("redis+cluster://h", "expected host:port"),
    ("redis+sentinel://h:26379", "names its service"),
    ("redis+sentinel://h:26379/a/b/c", "names its service"),
    ("redis://h:1/abc", "db index must be a non-negative integer, not 'abc'"),
    ("rediss://h:1/-1", "db index must be a non-negative integer"),
    ("redis://h:1/0/1", "expected redis://host:port/db"),
    ("redis+sentinel://h:26379/m/x", "db index must be a non-negative integer"),
    ("unix:///tmp/r.sock?db=abc", "option db: the db index"),
])
def test_mistakes_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_url(url)


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://u:secret@h:1/0", "redis://u:***@h:1/0"),
    ("redis://:secret@h:1/0", "redis://:***@h:1/0"),
    ("redis+cluster://u:secret@a:1,b:2", "redis+cluster://u:***@a:1,b:2"),
    ("redis+sentinel://h:1/m?sentinel_password=secret&db=1",
     "redis+sentinel://h:1/m?sentinel_password=***&db=1"),
    ("rediss://h:1/0?ssl_ca_certs=/a@b/ca.pem", "rediss://h:1/0?ssl_ca_certs=/a@b/ca.pem"),
])
def test_passwords_are_redacted(url: str, shown: str) -> None:
    assert redact(url) == shown


async def test_connect_builds_the_client_for_the_scheme() -> None:
    cluster = connect("redis+cluster://127.0.0.1:7000")
    single = connect("redis://127.0.0.1:6379/0")
    sentinel = connect("redis+sentinel://127.0.0.1:26379/corral")
    try:
        assert is_cluster(cluster) and not is_cluster(single) and not is_cluster(sentinel)
    finally:
        for client in (cluster, single, sentinel):
            await client.aclose()
    with pytest.raises(ConfigError):
        connect("redis://h:1/0?bogus=1")


@pytest.mark.parametrize("value", ["hunter2", "s3cret-token value", "user:hunter2@host"])
def test_a_value_that_is_no_url_is_not_repeated(value: str) -> None:
    # The operator reads whatever Secret key a TaskQueue names; the error it reports
    # in the TaskQueue's status must not show a Secret that was never a URL.
    with pytest.raises(ConfigError, match="not a Redis URL") as caught:
        parse_url(value)
    assert "hunter2" not in str(caught.value) and "s3cret" not in str(caught.value)
