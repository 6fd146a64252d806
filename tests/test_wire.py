"""The portal <-> server process wire format: typed, versioned, no pickle."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_mud import Session
from trio_mud.messages import (
    Broadcast,
    Connect,
    DataIn,
    DataOut,
    Disconnect,
    Done,
    Hello,
    Loaded,
    Pause,
    Paused,
    ReloadRequest,
    Resume,
    SessionUpdate,
    Snapshot,
)
from trio_mud.serverproc import settings_from_json, settings_to_json
from trio_mud.wire import FrameReader, Undecodable, WireError, decode_body, encode, encode_many

from .helpers import make_settings

SESSION = Session(protocol_key="telnet", address="127.0.0.1", sessid=7, uid=3, uname="Ann")
SESSION.protocol_flags.update({"SCREENWIDTH": {0: 120}, "GMCP_SUPPORTS": {"Room": 1}})

MESSAGES = [
    Connect(7, SESSION.get_sync_data(), txid=1),
    DataIn(7, "text", ("look",), {}, txid=2),
    DataIn(7, "client_options", (), {"screenwidth": 80, "nested": {"a": [1, 2]}}, txid=3),
    DataOut(7, "Room.Info", (), {"num": 1, "exits": {"n": 6}}, txid=3),
    DataOut(7, "text", ("Ünïcode |rred|n",)),
    Disconnect(7, "bye", txid=4),
    SessionUpdate(7, {"protocol_flags": {"SCREENHEIGHT": {0: 40}}}, txid=5),
    Done(5, 7, {"cmd_total": 3, "cmd_last": 1.5}),
    Broadcast((7, 8, 9), "text", ("Ann says, |r'hi'|n",), {}, txid=6),
    Broadcast((7,), "msdp", (), {"ROOM": {"VNUM": 1}, "LIST": [1, [2]]}),
    Pause(),
    Paused(),
    Resume(),
    Loaded(),
    ReloadRequest(7),
    Hello(1234),
    Snapshot((SESSION.get_sync_data(), Session(sessid=8).get_sync_data())),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: object) -> None:
    assert FrameReader().feed(encode(message)) == [message]  # type: ignore[arg-type]


def test_snapshot_restores_sessions_exactly() -> None:
    (snapshot,) = FrameReader().feed(encode(Snapshot((SESSION.get_sync_data(),))))
    assert isinstance(snapshot, Snapshot) and snapshot.version == 1
    restored = Session()
    restored.load_sync_data(snapshot.sessions[0])
    assert restored.get_sync_data() == SESSION.get_sync_data()
    assert restored.protocol_flags["SCREENWIDTH"] == {0: 120}  # int keys survive JSON


def test_frames_split_anywhere() -> None:
    stream = b"".join(encode(m) for m in MESSAGES)  # type: ignore[arg-type]
    for cut in range(0, len(stream), 7):
        reader = FrameReader()
        assert reader.feed(stream[:cut]) + reader.feed(stream[cut:]) == MESSAGES
    reader = FrameReader()
    assert [m for i in range(len(stream)) for m in reader.feed(stream[i : i + 1])] == MESSAGES


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        json.dumps({"type": "Pickle", "data": "x"}).encode(),
        json.dumps({"type": "DataIn", "cmdname": "text"}).encode(),  # no sessid
        json.dumps([1, 2, 3]).encode(),
    ],
)
def test_bad_frames_are_refused_one_by_one(body: bytes) -> None:
    good = encode(DataIn(7, "text", ("look",), {}, txid=3))
    items = FrameReader().feed(struct.pack(">I", len(body)) + body + good)
    assert len(items) == 2
    assert isinstance(items[0], Undecodable)  # this frame's error only ...
    assert items[1] == DataIn(7, "text", ("look",), {}, txid=3)  # ... the link goes on
    with pytest.raises(WireError):
        decode_body(body)


def test_oversized_frames_are_refused() -> None:
    with pytest.raises(WireError):
        FrameReader(max_frame=100).feed(struct.pack(">I", 101))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(WireError):
        FrameReader(max_frame=200).feed(data)


def test_settings_travel_to_the_server_process(tmp_path: object) -> None:
    settings = make_settings(tmp_path, telnet_ports=(4000, 4001))  # type: ignore[arg-type]
    assert settings_from_json(settings_to_json(settings)) == settings


def test_a_broadcast_is_one_frame_however_many_recipients() -> None:
    message = Broadcast(tuple(range(1, 1001)), "text", ('Ann says, "hi"',), {}, txid=9)
    frame = encode(message)
    assert len(frame) < 6000  # the text once, and the sessids
    reader = FrameReader()
    assert reader.feed(frame) == [message]
    gmcp = Broadcast((1, 2), "Room.Info", (), {"exits": {"n": 2}, "__items__": 1}, txid=3)
    assert FrameReader().feed(encode(gmcp)) == [gmcp]


def test_many_messages_are_one_write() -> None:
    data, failed = encode_many(MESSAGES)
    assert failed == []
    assert FrameReader().feed(data) == MESSAGES
