"""Input address policy and data URIs, in-process."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from cog.server.files import InputFileError, _decode_data_uri, file_url_problem
from cog.server.urls import PolicyResolver, UrlPolicy


def test_default_policy_refuses_link_local_and_metadata_only():
    policy = UrlPolicy()
    for address in ("169.254.169.254", "fe80::1", "fd00:ec2::254", "::ffff:169.254.169.254"):
        assert not policy.permits(address), address
    for address in ("127.0.0.1", "10.1.2.3", "93.184.216.34", "::1"):
        assert policy.permits(address), address


def test_env_lists(monkeypatch):
    monkeypatch.setenv("COG_INPUT_URL_DENY", "10.0.0.0/8, 192.168.0.0/16")
    monkeypatch.setenv("COG_INPUT_URL_ALLOW", "10.0.0.0/8,93.184.216.0/24")
    policy = UrlPolicy.from_env()
    assert not policy.permits("10.1.1.1")  # deny wins
    assert policy.permits("93.184.216.34")
    assert not policy.permits("8.8.8.8")  # not on the allow list


def test_resolver_drops_forbidden_answers():
    async def resolve(policy):
        resolver = PolicyResolver(policy)
        try:
            return await resolver.resolve("localhost", 80)
        finally:
            await resolver.close()

    assert asyncio.run(resolve(UrlPolicy()))[0]["host"] == "127.0.0.1"
    with pytest.raises(OSError, match="may not reach"):
        asyncio.run(resolve(UrlPolicy(deny=[ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")])))


def test_data_uris():
    assert _decode_data_uri("data:text/plain;base64,aGk=") == (b"hi", "text/plain")
    assert _decode_data_uri("data:,a%20b") == (b"a b", "text/plain")
    with pytest.raises(InputFileError):
        _decode_data_uri("data:text/plain;base64")
    assert file_url_problem("https://x/y") is None and "not a valid URL scheme" in file_url_problem("file:///etc/passwd")
