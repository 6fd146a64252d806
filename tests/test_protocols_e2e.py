"""MUD protocols end to end: a scripted MUD client over a real socket."""

from __future__ import annotations

from pathlib import Path

import attrs
import trio
import trio.testing

from trio_mud import Server
from trio_mud.protocols.telnet import DO, GA, IAC, WILL, WONT, Opt

from .helpers import (
    Client,
    Compressing,
    MudClient,
    login,
    make_settings,
    mud_login,
    start_server,
)


def session_of(server: Server, name: str) -> dict[str, object]:
    assert server.handler is not None
    for session in server.handler.sessions.values():
        if session.uname == name:
            return session.protocol_flags
    raise AssertionError(f"{name} is not logged in")


async def test_negotiated_flags_reach_the_handler(server: Server) -> None:
    mud = await mud_login(server.telnet_port, "Ann")
    flags = session_of(server, "Ann")
    assert flags["CLIENTNAME"] == "TESTCLIENT" and flags["CLIENTVERSION"] == "1.0"
    assert flags["MTTS"] == 271 and flags["TRUECOLOR"] and flags["XTERM256"]
    assert flags["SCREENWIDTH"] == {0: 100} and flags["SCREENHEIGHT"] == {0: 40}
    assert flags["GMCP"] and flags["MSDP"] and flags["EOR"]
    # A resize later on reaches the handler's copy too. Input is handled in
    # order, so once the next command is answered, the resize has arrived.
    mud.send_naws(132, 50)
    await mud.flush()
    await mud.command("look", "Exits:")
    assert flags["SCREENWIDTH"] == {0: 132} and flags["SCREENHEIGHT"] == {0: 50}


async def test_gmcp_room_info_follows_the_player(server: Server) -> None:
    mud = await mud_login(server.telnet_port, "Ann")
    assert await mud.wait_gmcp("Char.Name") == {"name": "Ann", "fullname": "Ann"}
    assert await mud.wait_gmcp("Char.Vitals") == {"hp": 100, "maxhp": 100}
    room = await mud.wait_gmcp("Room.Info")
    assert room == {
        "num": 1,
        "name": "Town Square",
        "area": "Trioville",
        "exits": {"n": 6, "e": 2, "w": 4, "s": 5},
    }
    await mud.send_line("north")
    assert (await mud.wait_gmcp("Room.Info"))["num"] == 6
    await mud.send_line("north")
    assert (await mud.wait_gmcp("Room.Info"))["area"] == "Pinewood"


async def test_gmcp_only_in_packages_the_client_advertised(server: Server) -> None:
    class RoomOnly(MudClient):
        supports = ("Room 1",)

    mud = await mud_login(server.telnet_port, "Ann", client=RoomOnly)
    await mud.wait_gmcp("Room.Info")
    await mud.command("look", "Exits:")
    assert all(not name.startswith("Char.") for name, _ in mud.gmcp)


async def test_gmcp_input_is_never_a_typed_command(server: Server) -> None:
    mud = await mud_login(server.telnet_port, "Ann")
    assert server.handler is not None
    session = next(iter(server.handler.sessions.values()))
    before = session.cmd_total
    await mud.send_gmcp("Text", ["quit"])
    await mud.send_gmcp("Core.Hello", {"client": "Renamed", "version": "2"})
    await mud.command("look", "Exits:")
    assert not mud.closed
    assert session.cmd_total == before + 1  # only "look"
    assert session.protocol_flags["CLIENTNAME"] == "Renamed"


async def test_gmcp_login(server: Server) -> None:
    await login(server.telnet_port, "Ann", "open sesame")
    stream = await trio.open_tcp_stream("127.0.0.1", server.telnet_port)
    mud = MudClient(stream)
    mud.supports = ("Char 1", "Char.Login 1", "Room 1")
    await mud.welcome()
    assert await mud.wait_gmcp("Char.Login.Default") == {"type": ["password-credentials"]}
    await mud.send_gmcp("Char.Login.Credentials", {"account": "Ann", "password": "wrong pass"})
    assert await mud.wait_gmcp("Char.Login.Result") == {
        "success": False,
        "message": "Incorrect name or password.",
    }
    await mud.send_gmcp("Char.Login.Credentials", {"account": "Ann", "password": "open sesame"})
    assert await mud.wait_gmcp("Char.Login.Result") == {"success": True, "message": ""}
    await mud.read_until("Exits:")


class MsdpOnly(MudClient):
    remote = frozenset({Opt.MSDP, Opt.EOR})


async def test_msdp_list_report_send_unreport(server: Server) -> None:
    mud = await mud_login(server.telnet_port, "Ann", client=MsdpOnly)
    await mud.send_msdp(b"\x01LIST\x02COMMANDS")
    assert await mud.wait_msdp("COMMANDS") == ["LIST", "REPORT", "UNREPORT", "SEND", "RESET"]
    await mud.send_msdp(b"\x01LIST\x02REPORTABLE_VARIABLES")
    assert "ROOM_NAME" in await mud.wait_msdp("REPORTABLE_VARIABLES")
    await mud.send_msdp(b"\x01REPORT\x02ROOM_NAME\x02ROOM")
    assert await mud.wait_msdp("ROOM_NAME") == "Town Square"  # at once
    assert (await mud.wait_msdp("ROOM"))["VNUM"] == "1"
    await mud.send_line("north")
    room = await mud.wait_msdp("ROOM")  # and on change
    assert room["VNUM"] == "6" and room["EXITS"] == {"s": "1", "n": "7"}
    assert await mud.wait_msdp("ROOM_NAME") == "North Gate"
    await mud.send_msdp(b"\x01SEND\x02SERVER_ID")
    assert await mud.wait_msdp("SERVER_ID") == "trio_mud"
    await mud.send_msdp(b"\x01UNREPORT\x02ROOM_NAME\x02ROOM")
    await mud.send_line("south")
    await mud.read_until("Exits:")
    await mud.send_msdp(b"\x01LIST\x02REPORTED_VARIABLES")
    assert await mud.wait_msdp("REPORTED_VARIABLES") == []
    assert not [name for name, _ in mud.msdp if name.startswith("ROOM")]


async def test_one_encoding_only_when_a_client_has_gmcp_and_msdp(server: Server) -> None:
    mud = await mud_login(server.telnet_port, "Ann")  # GMCP and MSDP both on
    await mud.send_msdp(b"\x01REPORT\x02ROOM_NAME")
    assert await mud.wait_msdp("ROOM_NAME") == "Town Square"  # a direct answer
    mud.gmcp.clear()  # what came with the login
    await mud.send_line("north")
    assert (await mud.wait_gmcp("Room.Info"))["num"] == 6
    await mud.command("look", "Exits:")
    assert mud.msdp == []  # the move went out as GMCP only


async def test_mssp_over_telnet_and_as_plain_text(server: Server) -> None:
    player = await login(server.telnet_port, "Ann")
    crawler = Client(await trio.open_tcp_stream("127.0.0.1", server.telnet_port))
    await crawler.welcome()
    await crawler.send_line("MSSP-REQUEST")
    reply = await crawler.read_until("MSSP-REPLY-END")
    start = reply.index("MSSP-REPLY-START")
    fields = dict(line.split("\t", 1) for line in reply[start + 1 : -1])
    assert fields["NAME"] == "trio_mud" and fields["PLAYERS"] == "1"
    assert int(fields["UPTIME"]) > 1_700_000_000
    assert fields["PORT"] == str(server.telnet_port)
    assert fields["GMCP"] == "1" and fields["MCCP"] == "1"

    class MsspClient(MudClient):
        remote = frozenset({Opt.MSSP})

    mssp = MsspClient(await trio.open_tcp_stream("127.0.0.1", server.telnet_port))
    await mssp.welcome()
    with trio.fail_after(10):
        while not mssp.mssp:
            await mssp._receive()
    assert b"\x01PLAYERS\x021" in mssp.mssp and b"\x01NAME\x02trio_mud" in mssp.mssp
    await player.aclose()


async def test_password_prompt_hides_what_is_typed(server: Server) -> None:
    await login(server.telnet_port, "Ann", "open sesame")
    stream = await trio.open_tcp_stream("127.0.0.1", server.telnet_port)
    mud = MudClient(stream)
    await mud.welcome()
    mud.raw.clear()
    await mud.send_line("connect Ann")
    with trio.fail_after(10):
        while not mud.protocol.remote_enabled(Opt.ECHO):
            await mud._receive()
    assert b"Password: " + bytes((IAC, WILL, Opt.ECHO)) in mud.raw
    assert mud.protocol.partial_line == b"Password: "  # held as a prompt, with EOR
    await mud.send_line("open sesame")
    await mud.read_until("Exits:")
    assert not mud.protocol.remote_enabled(Opt.ECHO)  # echo is back
    assert bytes((IAC, WONT, Opt.ECHO)) in mud.raw
    assert b"open sesame" not in mud.raw


async def test_create_asks_for_a_password_too(server: Server) -> None:
    client = Client(await trio.open_tcp_stream("127.0.0.1", server.telnet_port))
    await client.welcome()
    client.raw.clear()
    await client.send_line("create Ann")
    with trio.fail_after(10):
        while bytes((IAC, GA)) not in client.raw:
            await client._receive()
    # A client that refuses ECHO still gets a prompt ended by GA.
    assert client.raw.startswith(b"Password: " + bytes((IAC, WILL, Opt.ECHO)))
    assert bytes((IAC, DO, Opt.ECHO)) not in client.raw
    await client.send_line("open sesame")
    await client.read_until("Exits:")


async def test_colour_is_rendered_for_each_client(server: Server) -> None:
    port = server.telnet_port

    class TwoFiftySix(MudClient):
        ttype = ("OLDCLIENT", "XTERM-256COLOR", "MTTS 9")

    true = await mud_login(port, "True")  # MTTS 271: truecolor
    x256 = await mud_login(port, "Older", client=TwoFiftySix)
    plain = await login(port, "Plain")  # never answered TTYPE: 16 colours
    await plain.send_line("say |#ff0000red|n and |500cube")
    for client in (true, x256):
        await client.read_until("Plain says")
    await plain.read_until("You say")
    assert b"\x1b[0;38;2;255;0;0mred" in true.raw
    assert b"\x1b[0;38;5;196mred" in x256.raw
    assert b"\x1b[0;1;31mred" in plain.raw
    assert b"38;2" not in x256.raw and b"38;5" not in plain.raw


async def test_nocolor_and_screenreader(tmp_path: Path) -> None:
    class ScreenReader(MudClient):
        ttype = ("READER", "ANSI", "MTTS 65")  # ANSI + screen reader
        screen_reader = True

    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        reader = await mud_login(server.telnet_port, "Ann", client=ScreenReader)
        await reader.send_line("look")
        await reader.read_until("Exits:")
        assert b"\x1b" not in reader.raw
        assert b"=====" not in reader.raw  # the rules of the connection screen went too
        nursery.cancel_scope.cancel()


async def test_mccp2_stream_ends_cleanly_on_quit(server: Server) -> None:
    mud = await mud_login(server.telnet_port, "Ann", client=Compressing)
    assert mud.inflater is not None  # everything after the marker came compressed
    await mud.send_line("quit")
    farewell = await mud.read_until_closed()
    assert "Goodbye! Come back soon." in farewell
    assert mud.mccp_finished  # Z_FINISH: a complete zlib stream, then the close


async def test_traffic_counts_mccp2_output_before_and_after_compression(server: Server) -> None:
    mud = await mud_login(server.telnet_port, "Ann", client=Compressing)
    await mud.command("look", "Exits:")
    wire_in, wire_out, plain_in, plain_out = server.portal.traffic()["telnet"]
    assert plain_in == wire_in  # nothing compressed on the way in
    assert plain_out > wire_out > 0  # the room compresses


async def test_mccp2_stream_ends_cleanly_on_shutdown(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        mud = await mud_login(server.telnet_port, "Ann", client=Compressing)
        server.shutdown()
        assert "The server is shutting down. Goodbye!" in await mud.read_until_closed()
        assert mud.mccp_finished


async def read_until_a_nop(client: Client) -> None:
    """Read until an ``IAC NOP`` comes after the connection screen."""
    with trio.fail_after(10):
        while bytes((IAC, 241)) not in client.raw.split(b"=====")[-1]:
            await client._receive()


async def test_keepalive_nop_when_output_is_quiet(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path, telnet_keepalive=0.05))
        client = await Client.connect(server.telnet_port)
        await client.welcome()
        await read_until_a_nop(client)
        nursery.cancel_scope.cancel()


async def test_keepalive_turned_on_by_new_settings_starts_at_once(tmp_path: Path) -> None:
    """The sweeper was asleep for up to a minute; new settings wake it."""
    async with trio.open_nursery() as nursery:
        settings = make_settings(tmp_path, idle_timeout=0)
        server = await start_server(nursery, settings)
        client = await Client.connect(server.telnet_port)
        await client.welcome()
        await trio.testing.wait_all_tasks_blocked()  # the sweeper sleeps its minute
        server.portal.settings = attrs.evolve(settings, telnet_keepalive=0.05)
        await read_until_a_nop(client)
        nursery.cancel_scope.cancel()


async def test_a_client_that_answers_nothing_gets_the_screen_after_the_window(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path, negotiation_timeout=0.25))
        stream = await trio.open_tcp_stream("127.0.0.1", server.telnet_port)
        started = trio.current_time()
        received = b""
        with trio.fail_after(10):
            while b"shows this screen again" not in received:
                received += await stream.receive_some()  # never answers anything
        assert trio.current_time() - started >= 0.25
        assert received.startswith(bytes((IAC, DO, Opt.TTYPE)))
        nursery.cancel_scope.cancel()
