"""Session sync semantics, as Evennia's Session defines them."""

from __future__ import annotations

from trio_mud import DEFAULT_SESSION_SYNC_ATTRS, Session


def test_new_session_has_the_seed_fields_and_defaults() -> None:
    session = Session(protocol_key="telnet", address="127.0.0.1", sessid=7)
    assert session.uid is None and session.puid is None and session.uname is None
    assert session.logged_in is False
    assert session.cmd_total == 0
    assert session.cmd_last == session.cmd_last_visible == session.conn_time
    assert session.protocol_flags == {
        "ENCODING": "utf-8",
        "SCREENREADER": False,
        "INPUTDEBUG": False,
        "RAW": False,
        "NOCOLOR": False,
        "LOCALECHO": False,
    }
    assert session.server_data == {}


def test_sessions_do_not_share_mutable_defaults() -> None:
    one, two = Session(), Session()
    one.protocol_flags["NOCOLOR"] = True
    one.server_data["x"] = 1
    assert two.protocol_flags["NOCOLOR"] is False
    assert two.server_data == {}


def test_get_sync_data_returns_the_configured_attributes() -> None:
    session = Session(sessid=3, uname="Ann")
    data = session.get_sync_data()
    assert set(data) == set(DEFAULT_SESSION_SYNC_ATTRS)
    assert data["sessid"] == 3 and data["uname"] == "Ann"

    narrow = Session(sessid=3, uname="Ann", sync_attrs=("sessid", "uname", "no_such_attr"))
    assert narrow.get_sync_data() == {"sessid": 3, "uname": "Ann"}


def test_get_sync_data_copies_dicts() -> None:
    session = Session()
    data = session.get_sync_data()
    data["protocol_flags"]["NOCOLOR"] = True
    assert session.protocol_flags["NOCOLOR"] is False


def test_load_sync_data_merges_protocol_flags() -> None:
    session = Session()
    session.protocol_flags["SCREENWIDTH"] = {0: 120}
    session.load_sync_data({"protocol_flags": {"NOCOLOR": True}, "uname": "Bob", "uid": 9})
    assert session.protocol_flags["NOCOLOR"] is True
    assert session.protocol_flags["SCREENWIDTH"] == {0: 120}  # kept, not replaced
    assert session.protocol_flags["ENCODING"] == "utf-8"
    assert session.uname == "Bob" and session.uid == 9


def test_load_sync_data_replaces_flags_given_as_a_non_dict() -> None:
    session = Session()
    session.load_sync_data({"server_data": {"a": 1}})
    session.load_sync_data({"server_data": {"b": 2}})
    assert session.server_data == {"b": 2}  # only protocol_flags is merged


def test_sync_round_trip_between_two_copies() -> None:
    portal_copy = Session(protocol_key="telnet", address="127.0.0.1", sessid=5)
    portal_copy.protocol_flags["SCREENREADER"] = True
    server_copy = Session()
    server_copy.load_sync_data(portal_copy.get_sync_data())
    assert server_copy.get_sync_data() == portal_copy.get_sync_data()


def test_counters_move_as_evennia_moves_them() -> None:
    session = Session(conn_time=100.0)
    session.update_session_counters(now=110.0)
    assert (session.cmd_total, session.cmd_last, session.cmd_last_visible) == (1, 110.0, 110.0)
    session.update_session_counters(idle=True, now=120.0)
    assert (session.cmd_total, session.cmd_last, session.cmd_last_visible) == (1, 120.0, 110.0)
