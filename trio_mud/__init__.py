"""trio_mud: a MUD server core on Trio.

The supported API is what this module exports.
"""

from ._version import __version__
from .handler import Handler, HandlerHooks, HandlerStatistics, InputFunc, ServerSession
from .messages import Connect, DataIn, DataOut, Disconnect, SessionUpdate
from .nursery_portal import Portal, PortalLink, PortalSession, PortalStatistics
from .server import Server
from .session import Session
from .settings import DEFAULT_SESSION_SYNC_ATTRS, Settings

__all__ = [
    "DEFAULT_SESSION_SYNC_ATTRS",
    "Connect",
    "DataIn",
    "DataOut",
    "Disconnect",
    "Handler",
    "HandlerHooks",
    "HandlerStatistics",
    "InputFunc",
    "Portal",
    "PortalLink",
    "PortalSession",
    "PortalStatistics",
    "Server",
    "ServerSession",
    "Session",
    "SessionUpdate",
    "Settings",
    "__version__",
]
