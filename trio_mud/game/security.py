"""Who may log in: bans, and throttles an attacker cannot reset.

Failed logins are counted per address and per account name, account
creations per address, in the database (``auth_events``): reconnecting, a
reload or a restart resets nothing. At ``login_throttle_limit`` failures
within ``login_throttle_timeout`` seconds, further logins from that address,
or to that account, are refused without a password check until the oldest
failure has aged out (Evennia's defaults: 5 in 5 minutes). Creation is
throttled the same way (``creation_throttle_limit`` in
``creation_throttle_timeout``).

Every failed login is logged in one fixed format for fail2ban::

    auth failed for NAME from ADDRESS

Bans (``bans``) are addresses, networks or account names. Address bans are
enforced by the portal at accept time (the handler sends it the list);
account bans here, at login.
"""

from __future__ import annotations

import ipaddress
import logging
import time

from ..admission import Tally
from ..settings import Settings
from .accounts import NAME_PATTERN
from .store import Ban, Store, name_key

log = logging.getLogger("trio_mud.auth")

FAILED_LOGIN = "failed_login"
CREATED = "created"


def ban_target(text: str) -> tuple[str, str] | None:
    """``("address", normalised)`` for an address or network, ``("account",
    name key)`` for an account name, or None for neither."""
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    else:
        mapped = getattr(network.network_address, "ipv4_mapped", None)
        if mapped is not None and network.prefixlen >= 96:
            # ::ffff:203.0.113.7 (as a dual-stack proxy may name a client) is IPv4.
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}", strict=False)
        return "address", str(network.network_address if network.num_addresses == 1 else network)
    if NAME_PATTERN.fullmatch(text):
        return "account", name_key(text)
    return None


def log_name(name: str) -> str:
    """``name`` as the log shows it: as typed if it could be a name, else ``-``
    (the log line's format must hold, whatever a client typed)."""
    return name if NAME_PATTERN.fullmatch(name) else "-"


class LoginGuard:
    """Throttles and account bans, over the game's store."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        #: Banned account name keys (loaded by :meth:`load`, kept current).
        self.banned_accounts: set[str] = set()
        #: Logins being checked now, per ``(kind, key)``: they count against
        #: the throttle as failures until they are known not to be, so that
        #: guesses sent at the same moment cannot all slip through.
        self._checking = Tally()

    def begin(self, name: str, address: str) -> tuple[int, int]:
        """A login attempt starts; how many were being checked before it (by
        address, by account). Call :meth:`end` when it is over."""
        return (
            self._checking.add(("address", address)),
            self._checking.add(("account", _account_key(name))),
        )

    def end(self, name: str, address: str) -> None:
        """The attempt :meth:`begin` started is over (its failure, if any, recorded)."""
        self._checking.remove(("address", address))
        self._checking.remove(("account", _account_key(name)))

    async def load(self) -> list[Ban]:
        """Every ban, read from the database (the account bans are kept here)."""
        bans = await self.store.bans()
        self.banned_accounts = {ban.value for ban in bans if ban.kind == "account"}
        return bans

    async def login_refusal(
        self, name: str, address: str, ahead: tuple[int, int] = (0, 0)
    ) -> str | None:
        """Why a login to ``name`` from ``address`` may not even be tried now, or None.

        ``ahead``: attempts being checked at the same time (from :meth:`begin`),
        counted as failures.
        """
        limit, window = self.settings.login_throttle_limit, self.settings.login_throttle_timeout
        keys = (("address", address), ("account", _account_key(name)))
        for (kind, key), checking in zip(keys, ahead, strict=True):
            count, oldest = await self.store.count_auth_events(
                f"{FAILED_LOGIN}:{kind}", key, window
            )
            count += checking
            if count >= limit:
                wait = max(1, int((oldest or time.time()) + window - time.time()) + 1)
                log.warning(
                    "login throttled for %s from %s (%d failures)", log_name(name), address, count
                )
                whose = "from your address" if kind == "address" else "to that account"
                return f"Too many failed logins {whose}; try again in {_minutes(wait)}."
        if name_key(name) in self.banned_accounts:
            log.warning("login refused for %s from %s: banned", log_name(name), address)
            return self.settings.ban_message
        return None

    async def login_failed(self, name: str, address: str) -> None:
        """Count a failed login against the address and the name, and log it."""
        log.warning("auth failed for %s from %s", log_name(name), address)
        await self.store.record_auth_event(
            [(f"{FAILED_LOGIN}:address", address), (f"{FAILED_LOGIN}:account", _account_key(name))],
            keep=max(self.settings.login_throttle_timeout, self.settings.creation_throttle_timeout),
        )

    async def creation_refusal(self, address: str) -> str | None:
        """Why ``address`` may not make another account now, or None."""
        limit, window = (
            self.settings.creation_throttle_limit,
            self.settings.creation_throttle_timeout,
        )
        count, oldest = await self.store.count_auth_events(CREATED, address, window)
        if count >= limit:
            wait = max(1, int(oldest + window - time.time()) + 1)
            log.warning("account creation throttled for %s (%d made)", address, count)
            return (
                f"Too many accounts were made from your address recently; "
                f"try again in {_minutes(wait)}."
            )
        return None

    async def created(self, address: str) -> None:
        """Count an account made from ``address`` (for the creation throttle)."""
        await self.store.record_auth_event(
            [(CREATED, address)],
            keep=max(self.settings.login_throttle_timeout, self.settings.creation_throttle_timeout),
        )


def _account_key(name: str) -> str:
    """What failures to ``name`` are counted under (bounded: it is what a client typed)."""
    return name_key(name)[:64]


def _minutes(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = (seconds + 59) // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
