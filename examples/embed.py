"""Run trio_mud's portal and a handler with your own input functions."""

import trio

from trio_mud import Handler, Portal, ServerSession, Settings


def shout(session: ServerSession, text: str, **kwargs: object) -> None:
    session.msg(text.upper() + "!")


async def run_shouting_mud(settings: Settings, *, task_status=trio.TASK_STATUS_IGNORED):
    portal = Portal(settings)
    handler = Handler(settings, {"text": shout})
    async with trio.open_nursery() as nursery:
        await nursery.start(portal.run)
        await nursery.start(handler.run, portal)
        task_status.started(portal)


if __name__ == "__main__":
    trio.run(run_shouting_mud, Settings(telnet_ports=(4000,)))
