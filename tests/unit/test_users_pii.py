"""Personal data at rest (issue 15), without I/O: AES-GCM values bound to their column, key ids
for rotation, plaintext from before encryption passing through, blind indexes under the
current and previous index keys, and settings that refuse bad or default keys."""

from __future__ import annotations

import pytest

from persistence.pii import PREFIX, PiiCodec, PiiError, new_key_text, normalise_name
from pocho_rt.config import DEV_PII_INDEX_KEY, DEV_PII_KEY, ConfigError, load_settings

INDEX2 = "SW5kZXgta2V5LXR3by0zMi1ieXRlcy1sb25nLWVub3VnaA"


def _codec(**kw: str) -> PiiCodec:
    return PiiCodec.build(
        kw.get("key", DEV_PII_KEY), kw.get("old", ""), kw.get("index", DEV_PII_INDEX_KEY), kw.get("old_index", "")
    )


def test_values_round_trip_and_differ_every_time() -> None:
    c = _codec()
    a, b = c.seal("phone", "+2348011112222"), c.seal("phone", "+2348011112222")
    assert a != b and a is not None and a.startswith(f"{PREFIX}dev.")
    assert "2348011112222" not in a
    assert c.open("phone", a) == c.open("phone", b) == "+2348011112222"
    assert c.seal("email", None) is None and c.open("email", None) is None
    assert c.open("first_name", "Ada") == "Ada"  # a row from before encryption reads as it is
    assert c.key_id(a) == "dev" and c.key_id("Ada") is None


def test_a_value_opens_only_in_its_column_and_with_its_key() -> None:
    c = _codec()
    sealed = c.seal("first_name", "Ada")
    with pytest.raises(PiiError, match="does not open"):
        c.open("last_name", sealed)  # moved to another column
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]  # type: ignore[index]
    with pytest.raises(PiiError):
        c.open("first_name", tampered)
    other = _codec(key=new_key_text("k2"))
    with pytest.raises(PiiError, match="no key with id 'dev'"):
        other.open("first_name", sealed)
    same_id_other_key = _codec(key=new_key_text("dev"))
    with pytest.raises(PiiError, match="does not open"):
        same_id_other_key.open("first_name", sealed)


def test_rotation_reads_old_keys_and_seals_with_the_new() -> None:
    old = _codec()
    new_key = new_key_text("k2")
    rotated = _codec(key=new_key, old=DEV_PII_KEY, index=INDEX2, old_index=DEV_PII_INDEX_KEY)
    sealed_old = old.seal("email", "ada@example.com")
    assert rotated.open("email", sealed_old) == "ada@example.com"
    assert rotated.key_id(rotated.seal("email", "x")) == "k2"
    # Lookups match both index keys until the rows are re-indexed.
    assert old.index("phone", "+234") in rotated.digests("phone", "+234")
    assert rotated.index("phone", "+234") != old.index("phone", "+234")
    assert len(rotated.digests("phone", "+234")) == 2 and len(old.digests("phone", "+234")) == 1


def test_blind_indexes_are_normalised_and_labelled() -> None:
    c = _codec()
    row = c.user_values(phone="+2348011112222", first_name=" Ada ", last_name="OBI", email="Ada@Example.COM ")
    assert row["name_index"] == c.index("name", normalise_name("ada", "obi")) == c.index("name", "ada obi")
    assert row["email_index"] == c.index("email", "ada@example.com")
    assert c.index("phone", "x") != c.index("email", "x")  # one value, two columns, two digests
    opened = c.open_user({**row, "id": 1})
    assert opened is not None and opened["email"] == "Ada@Example.COM " and "phone_index" not in opened


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("nokid", "kid:base64url"),
        ("bad kid!:AAAA", "kid:base64url"),
        ("k1:" + "A" * 10, "32 bytes"),
        ("k1:***", "base64url"),
    ],
)
def test_bad_keys_are_refused(key: str, message: str) -> None:
    with pytest.raises(PiiError, match=message):
        _codec(key=key)
    with pytest.raises(ConfigError, match="POCHO_PII_KEY"):
        load_settings({"POCHO_PII_KEY": key})


def test_settings_validate_and_production_refuses_default_keys() -> None:
    with pytest.raises(ConfigError, match="POCHO_PII_INDEX_KEY"):
        load_settings({"POCHO_PII_INDEX_KEY": "c2hvcnQ"})
    with pytest.raises(ConfigError, match="POCHO_PII_OLD_KEYS"):
        load_settings({"POCHO_PII_OLD_KEYS": f"{DEV_PII_KEY},broken"})
    prod = {"POCHO_ENV": "production", "JWT_SECRET": "x" * 40, "POCHO_ADMIN_KEY": "k" * 20, "TERMII_API_KEY": "t" * 20}
    with pytest.raises(ConfigError, match="POCHO_PII_KEY must be set"):
        load_settings(prod)
    with pytest.raises(ConfigError, match="POCHO_PII_KEY must be set"):
        load_settings({**prod, "POCHO_PII_KEY": DEV_PII_KEY, "POCHO_PII_INDEX_KEY": INDEX2})
    with pytest.raises(ConfigError, match="POCHO_PII_INDEX_KEY must be set"):
        load_settings({**prod, "POCHO_PII_KEY": new_key_text("k1")})
    key = new_key_text("k1")
    ok = load_settings({**prod, "POCHO_PII_KEY": key, "POCHO_PII_INDEX_KEY": INDEX2, "POCHO_PII_OLD_KEYS": DEV_PII_KEY})
    assert (ok.pii_key, ok.pii_index_key, ok.pii_old_keys) == (key, INDEX2, DEV_PII_KEY)


def test_requests_open_in_rows_and_in_stored_views() -> None:
    c = _codec()
    sealed = {"id": "r1", "address_line": c.seal("address_line", "1 Lane"), "notes": c.seal("notes", "hi")}
    assert c.open_request(sealed) == {"id": "r1", "address_line": "1 Lane", "notes": "hi"}
    legacy = {"address_line": "1 Old Lane", "notes": None}  # from before sealing
    assert c.open_request(legacy) == legacy
    view = {"request": {"addressLine": sealed["address_line"], "notes": None, "seq": 1}, "seq": 1}
    assert c.open_view(view) == {"request": {"addressLine": "1 Lane", "notes": None, "seq": 1}, "seq": 1}
    assert c.open_view({"offer": {"id": "o1"}}) == {"offer": {"id": "o1"}} and c.open_view([1]) == [1]
    with pytest.raises(PiiError):  # a note moved into the address column does not open
        c.open_request({"address_line": sealed["notes"]})
