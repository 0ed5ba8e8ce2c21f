"""Unit tests for the per-domain credential stores and the MN's credentials.

Each bad file is a good one with one defect; the tests check the key path of
the error, a meaningful part of its message, and that no message or repr
shows key material.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import logging
import os
from pathlib import Path

import pytest
import yaml

from mpa_protocol.credentials import (MAX_FILE_BYTES, CredentialStore, MnCredentials,
                                      load_mn_credentials, load_store)
from mpa_protocol.schema import ConfigError
from mpa_sdn.config import load_stores, load_topology, parse_topology
from support.paths import ROOT as REPO

TOPOLOGY_FILE = REPO / "topologies" / "two_domains.yaml"
SHIPPED = REPO / "topologies" / "credentials"
KEY = bytes(range(32))
B64 = "base64:" + base64.b64encode(KEY).decode()
HEX = "hex:" + KEY.hex()
NAI = "mn1@domain-a"


def store_raw(**changes) -> dict:
    raw = {"version": 1, "domain": "domain-a", "identities": {NAI: {"key": B64}}}
    raw.update(changes)
    return raw


def mn_raw() -> dict:
    return {"version": 1, "credentials": {
        "domain-a": {"identity": NAI, "key": B64},
        "domain-b": {"identity": NAI, "key": HEX.replace("00", "ff", 1)}}}


def write(directory: Path, raw_or_text, name="store.yaml", mode=0o600) -> str:
    path = directory / name
    text = raw_or_text if isinstance(raw_or_text, str) else yaml.safe_dump(raw_or_text)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return str(path)


def store_errors(tmp_path, raw_or_text, domain="domain-a") -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_store(write(tmp_path, raw_or_text), domain)
    assert info.value.errors
    return info.value.errors


def assert_error(errors, path, fragment):
    if not any(p == path and fragment in m for p, m in errors):
        pytest.fail(f"no error on {path!r} mentioning {fragment!r}; got {errors}")


# -- the shipped lab files ---------------------------------------------------

def test_shipped_stores_and_mn1_credentials_agree():
    topology = load_topology(str(TOPOLOGY_FILE))
    stores = load_stores(topology)
    assert set(stores) == set(topology.domains) == {"domain-a", "domain-b"}
    identity = topology.mobile_nodes["mn1"].identity
    mn1 = load_mn_credentials(str(SHIPPED / "mn1.yaml"))
    assert set(mn1.keys) == set(stores)
    for did, store in stores.items():
        assert store.domain == did
        assert store.identities() == (identity,)
        assert mn1.for_domain(did) == (identity, store.key(identity))
        assert len(store.key(identity)) == 32
    # The MN subscribes to two operators: each holds a key of its own.
    assert stores["domain-a"].key(identity) != stores["domain-b"].key(identity)


def test_shipped_files_say_they_are_lab_only():
    for path in sorted(SHIPPED.glob("*.yaml")):
        assert "LAB-ONLY KEYS" in path.read_text().splitlines()[0], path


# -- reading a store ---------------------------------------------------------

@pytest.mark.parametrize("encoded", [B64, HEX, HEX.upper().replace("HEX:", "hex:")],
                         ids=["base64", "hex", "hex-upper-case"])
def test_key_encodings(tmp_path, encoded):
    store = load_store(write(tmp_path, store_raw(identities={NAI: {"key": encoded}})), "domain-a")
    assert store.key(NAI) == KEY


@pytest.mark.parametrize("size", [16, 64])
def test_key_length_bounds_are_accepted(tmp_path, size):
    raw = store_raw(identities={NAI: {"key": "hex:" + "ab" * size}})
    assert load_store(write(tmp_path, raw), "domain-a").key(NAI) == b"\xab" * size


def test_store_lookups(tmp_path):
    raw = store_raw(identities={NAI: {"key": B64}, "mn2@domain-a": {"key": HEX}})
    store = load_store(write(tmp_path, raw), "domain-a")
    assert store.domain == "domain-a"
    assert len(store) == 2 and store.identities() == (NAI, "mn2@domain-a")
    assert NAI in store and "mn3@domain-a" not in store
    assert store.key("mn3@domain-a") is None
    assert store.key(None) is None and [NAI] not in store


@pytest.mark.parametrize("identities", [{}, None], ids=["empty", "null"])
def test_a_store_may_know_no_identity(tmp_path, identities):
    store = load_store(write(tmp_path, store_raw(identities=identities)), "domain-a")
    assert len(store) == 0 and store.key(NAI) is None


def test_store_is_immutable(tmp_path):
    store = load_store(write(tmp_path, store_raw()), "domain-a")
    with pytest.raises(AttributeError):
        store.domain = "domain-b"
    with pytest.raises(AttributeError):
        store._keys = {}
    with pytest.raises(TypeError):
        store._keys["x@y"] = KEY


BAD_KEYS = [
    ("base64:" + base64.b64encode(KEY[:15]).decode(), "is 15 bytes long; a key has 16..64"),
    ("hex:" + "ab" * 65, "is 65 bytes long"),
    ("base64:", "is 0 bytes long"),
    (base64.b64encode(KEY).decode(), "must start with 'base64:' or 'hex:'"),
    ("b64:" + base64.b64encode(KEY).decode(), "must start with 'base64:' or 'hex:'"),
    ("base64:" + base64.b64encode(KEY).decode()[:-1], "is not valid base64"),
    ("base64:" + base64.b64encode(KEY).decode().replace("A", "*"), "is not valid base64"),
    ("hex:" + KEY.hex()[:-1], "is not valid hex"),
    ("hex:" + KEY.hex()[:-2] + "zz", "is not valid hex"),
    (12345678901234567890, "must be a string 'base64:...' or 'hex:...', not an integer"),
]


@pytest.mark.parametrize("key, fragment", BAD_KEYS)
def test_bad_keys_are_reported_without_their_value(tmp_path, key, fragment):
    errors = store_errors(tmp_path, store_raw(identities={NAI: {"key": key}}))
    assert_error(errors, f"identities.{NAI}.key", fragment)
    secret = str(key).partition(":")[2] or str(key)
    assert not any(secret in m for _, m in errors)


STORE_DEFECTS = [
    pytest.param(store_raw(domain="domain-b"), "domain",
                 "'domain-b' is not 'domain-a', the domain this store is read for",
                 id="wrong-domain"),
    pytest.param(store_raw(extra=1), "extra", "unknown key", id="unknown-top-level-key"),
    pytest.param({"version": 1, "identities": {}}, "domain", "is required", id="no-domain"),
    pytest.param({"version": 1, "domain": "domain-a"}, "identities", "is required",
                 id="no-identities"),
    pytest.param({"domain": "domain-a", "identities": {}}, "version", "is required",
                 id="no-version"),
    pytest.param(store_raw(identities=[NAI]), "identities", "must be a mapping of identity",
                 id="identities-list"),
    pytest.param(store_raw(identities={"mn1": {"key": B64}}), "identities.mn1",
                 "not a network access identifier", id="identity-without-realm"),
    pytest.param(store_raw(identities={"m" * 250 + "@abc": {"key": B64}}),
                 "identities." + "m" * 250 + "@abc", "not a network access identifier",
                 id="identity-too-long"),
    pytest.param(store_raw(identities={123: {"key": B64}}), "identities.123",
                 "not a network access identifier", id="identity-integer"),
    pytest.param(store_raw(identities={NAI: {}}), f"identities.{NAI}.key", "is required",
                 id="identity-without-key"),
    pytest.param(store_raw(identities={NAI: B64}), f"identities.{NAI}", "must be a mapping",
                 id="identity-key-not-in-a-mapping"),
    pytest.param(store_raw(identities={NAI: {"key": B64, "note": "x"}}),
                 f"identities.{NAI}.note", "unknown key (allowed: key)",
                 id="identity-unknown-key"),
]


@pytest.mark.parametrize("raw, path, fragment", STORE_DEFECTS)
def test_store_defect(tmp_path, raw, path, fragment):
    assert_error(store_errors(tmp_path, raw), path, fragment)


@pytest.mark.parametrize("version", [2, "1", 1.0, True])
def test_another_version_is_the_only_error(tmp_path, version):
    errors = store_errors(tmp_path, store_raw(version=version, extra=1, domain="x"))
    assert errors == [("version", f"{version!r} is not a supported version (1)")]


def test_several_errors_are_all_reported(tmp_path):
    raw = store_raw(domain="domain-b", identities={"bad": {"key": B64}, NAI: {"key": "hex:00"}})
    assert sorted(p for p, _ in store_errors(tmp_path, raw)) == [
        "domain", "identities.bad", f"identities.{NAI}.key"]


def test_duplicate_identity_is_rejected_not_last_wins(tmp_path):
    text = f"version: 1\ndomain: domain-a\nidentities:\n  {NAI}: {{key: '{B64}'}}\n" \
           f"  {NAI}: {{key: '{HEX}'}}\n"
    (path, message), = store_errors(tmp_path, text)
    assert path == "" and f"duplicate key '{NAI}'" in message and "line 5" in message


@pytest.mark.parametrize("text, fragment", [
    ("", "the file is empty"), ("# nothing\n", "the file is empty"),
    ("- a\n", "must be a mapping, not a list"), ("version: [1\n", "not valid YAML"),
    ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
], ids=["empty", "comment", "list", "not-yaml", "python-tag"])
def test_file_level_errors_name_the_file(tmp_path, text, fragment):
    (path, message), = store_errors(tmp_path, text)
    assert path == "" and message.startswith(str(tmp_path / "store.yaml") + ": ")
    assert fragment in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_store(str(tmp_path / "nope.yaml"), "domain-a")
    assert info.value.errors == [("", f"{tmp_path / 'nope.yaml'}: cannot read "
                                      "(No such file or directory)")]


def test_directory_is_not_a_regular_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_store(str(tmp_path), "domain-a")
    assert info.value.errors == [("", f"{tmp_path}: not a regular file")]


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as info:
        load_store(str(fifo), "domain-a")
    assert "not a regular file" in info.value.errors[0][1]


def test_file_bigger_than_the_limit(tmp_path):
    path = write(tmp_path, yaml.safe_dump(store_raw()) + "#" * MAX_FILE_BYTES)
    with pytest.raises(ConfigError) as info:
        load_store(path, "domain-a")
    assert info.value.errors == [("", f"{path}: larger than {MAX_FILE_BYTES} bytes")]


def test_non_utf8_file(tmp_path):
    path = tmp_path / "store.yaml"
    path.write_bytes(yaml.safe_dump(store_raw()).encode() + "# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_store(str(path), "domain-a")
    assert info.value.errors == [("", f"{path}: not UTF-8 text")]


@pytest.mark.parametrize("mode, warned", [(0o600, False), (0o400, False), (0o640, True),
                                          (0o604, True), (0o620, True), (0o644, True)])
def test_group_or_other_access_is_warned_about_not_refused(tmp_path, caplog, mode, warned):
    path = write(tmp_path, store_raw(), mode=mode)
    with caplog.at_level(logging.WARNING, logger="mpa_protocol.credentials"):
        assert load_store(path, "domain-a").key(NAI) == KEY
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(warnings) == warned
    if warned:
        assert path in warnings[0] and "chmod 600" in warnings[0] and f"{mode:03o}" in warnings[0]


# -- nothing shows a key -----------------------------------------------------

def _secrets(key: bytes) -> list[str]:
    return [repr(key), key.hex(), base64.b64encode(key).decode()]


def test_repr_and_str_hide_the_keys(tmp_path):
    store = load_store(write(tmp_path, store_raw()), "domain-a")
    mn = load_mn_credentials(write(tmp_path, mn_raw(), "mn.yaml"))
    shown = [repr(store), str(store), repr(mn), str(mn), repr({"s": store}), repr([mn])]
    keys = [KEY, mn.for_domain("domain-b")[1]]
    assert not any(s in text for text in shown for key in keys for s in _secrets(key))
    assert repr(store) == "CredentialStore(domain='domain-a', identities=1)"
    assert repr(mn) == f"MnCredentials(domain-a: {NAI}, domain-b: {NAI})"


# -- several domains ---------------------------------------------------------

def _topology(**credentials):
    raw = yaml.safe_load(TOPOLOGY_FILE.read_text(encoding="utf-8"))
    for did, domain in raw["domains"].items():
        domain.pop("credentials", None)
        if credentials.get(did.replace("-", "_")):
            domain["credentials"] = credentials[did.replace("-", "_")]
    return parse_topology(copy.deepcopy(raw))


def test_a_domain_without_credentials_gets_an_empty_store(tmp_path):
    stores = load_stores(_topology(domain_a=write(tmp_path, store_raw())))
    assert stores["domain-a"].key(NAI) == KEY
    assert stores["domain-b"] == CredentialStore("domain-b") and len(stores["domain-b"]) == 0


def test_load_stores_collects_every_file_s_errors(tmp_path):
    a = write(tmp_path, store_raw(identities={NAI: {"key": "hex:00"}}), "a.yaml")
    missing = str(tmp_path / "b.yaml")
    with pytest.raises(ConfigError) as info:
        load_stores(_topology(domain_a=a, domain_b=missing))
    assert info.value.errors == [
        (f"{a}:identities.{NAI}.key", "is 1 bytes long; a key has 16..64"),
        ("domains.domain-b.credentials", f"{missing}: cannot read (No such file or directory)")]
    assert info.value.lines()[0] == f"{a}:identities.{NAI}.key: is 1 bytes long; a key has 16..64"


def test_one_file_cannot_serve_two_domains(tmp_path):
    shared = write(tmp_path, store_raw())
    with pytest.raises(ConfigError) as info:
        load_stores(_topology(domain_a=shared, domain_b=shared))
    assert info.value.errors == [
        (f"{shared}:domain", "'domain-a' is not 'domain-b', the domain this store is read for")]


def test_stores_resolve_relative_to_the_topology_file(tmp_path):
    raw = yaml.safe_load(TOPOLOGY_FILE.read_text(encoding="utf-8"))
    raw["domains"]["domain-a"]["credentials"] = "keys/a.yaml"
    del raw["domains"]["domain-b"]["credentials"]
    (tmp_path / "keys").mkdir()
    write(tmp_path / "keys", store_raw(), "a.yaml")
    write(tmp_path, raw, "topo.yaml", mode=0o644)
    stores = load_stores(load_topology(str(tmp_path / "topo.yaml")))
    assert stores["domain-a"].key(NAI) == KEY


def test_the_stores_of_the_domains_of_an_invalid_topology_are_read(tmp_path):
    """What parsed of a topology with errors elsewhere names the files, resolved
    as in a valid one: one check can report the topology's and the files' problems."""
    raw = yaml.safe_load(TOPOLOGY_FILE.read_text(encoding="utf-8"))
    raw["domains"]["domain-a"]["credentials"] = "keys/a.yaml"
    raw["domains"]["domain-b"]["credentials"] = "keys/b.yaml"
    raw["switches"]["core"]["dpid"] = 0
    (tmp_path / "keys").mkdir()
    write(tmp_path / "keys", store_raw(), "a.yaml")
    write(tmp_path, raw, "topo.yaml", mode=0o644)
    with pytest.raises(ConfigError) as info:
        load_topology(str(tmp_path / "topo.yaml"))
    assert [path for path, _ in info.value.errors] == ["switches.core.dpid"]
    with pytest.raises(ConfigError) as stores:
        load_stores(info.value.parsed)
    missing = tmp_path / "keys" / "b.yaml"
    assert stores.value.errors == [
        ("domains.domain-b.credentials", f"{missing}: cannot read (No such file or directory)")]
    write(tmp_path / "keys", store_raw(domain="domain-b"), "b.yaml")
    assert load_stores(info.value.parsed)["domain-a"].key(NAI) == KEY


# -- the MN's side -----------------------------------------------------------

def test_mn_credentials(tmp_path):
    mn = load_mn_credentials(write(tmp_path, mn_raw()))
    assert mn.for_domain("domain-a") == (NAI, KEY)
    assert mn.for_domain("domain-b")[0] == NAI and mn.for_domain("domain-b")[1] != KEY
    assert mn.for_domain("domain-c") is None
    assert mn == MnCredentials(dict(mn.keys))
    with pytest.raises(dataclasses.FrozenInstanceError):
        mn.keys = {}
    with pytest.raises(TypeError):
        mn.keys["domain-c"] = (NAI, KEY)


def _mn(mutate):
    raw = mn_raw()
    mutate(raw)
    return raw


MN_DEFECTS = [
    pytest.param(_mn(lambda r: r.update(extra=1)), "extra", "unknown key", id="unknown-key"),
    pytest.param(_mn(lambda r: r.pop("credentials")), "credentials", "is required",
                 id="no-credentials"),
    pytest.param(_mn(lambda r: r.update(credentials={})), "credentials", "at least one",
                 id="empty-credentials"),
    pytest.param(_mn(lambda r: r.update(credentials=[])), "credentials", "must be a mapping",
                 id="credentials-list"),
    pytest.param(_mn(lambda r: r["credentials"].update({"1domain": {"identity": NAI,
                                                                    "key": B64}})),
                 "credentials.1domain", "must start with a letter", id="bad-domain-id"),
    pytest.param(_mn(lambda r: r["credentials"]["domain-a"].pop("identity")),
                 "credentials.domain-a.identity", "is required", id="no-identity"),
    pytest.param(_mn(lambda r: r["credentials"]["domain-a"].update(identity="mn1")),
                 "credentials.domain-a.identity", "not a network access identifier",
                 id="identity-without-realm"),
    pytest.param(_mn(lambda r: r["credentials"]["domain-a"].update(key="hex:00")),
                 "credentials.domain-a.key", "is 1 bytes long", id="short-key"),
    pytest.param(_mn(lambda r: r["credentials"]["domain-a"].update(note="x")),
                 "credentials.domain-a.note", "unknown key", id="unknown-entry-key"),
    pytest.param(_mn(lambda r: r.update(version=2)), "version", "not a supported version",
                 id="version-2"),
]


@pytest.mark.parametrize("raw, path, fragment", MN_DEFECTS)
def test_mn_credentials_defect(tmp_path, raw, path, fragment):
    with pytest.raises(ConfigError) as info:
        load_mn_credentials(write(tmp_path, raw))
    assert_error(info.value.errors, path, fragment)
