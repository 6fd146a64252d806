"""Password hashing (argon2id) off the event loop, and name rules."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..settings import Settings

T = TypeVar("T")

NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{2,19}")
RESERVED_NAMES = frozenset({"admin", "all", "here", "me", "self", "someone", "nobody", "server"})


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be used for a new account, or None if it can."""
    if not NAME_PATTERN.fullmatch(name):
        return "Names are 3 to 20 characters: letters, digits, '-' and '_', starting with a letter."
    if name.casefold() in RESERVED_NAMES:
        return f"The name {name!r} is reserved."
    return None


def password_problem(settings: Settings, name: str, password: str) -> str | None:
    """Why ``password`` is not acceptable, or None if it is."""
    if len(password) < settings.min_password_length:
        return f"Passwords must be at least {settings.min_password_length} characters long."
    if len(password) > settings.max_password_length:
        return f"Passwords must be at most {settings.max_password_length} characters long."
    if password.casefold() == name.casefold():
        return "Your password must not be your name."
    return None


#: What the hash spent on unknown names is of.
_NOT_A_PASSWORD = "not a password anyone can type\x00"


class Passwords:
    """Argon2id hashing in worker threads, a bounded number at a time, shared fairly.

    At most ``password_hash_concurrency`` hashes run at once (each holds
    ``password_hash_memory_kib``), and at most ``password_hash_per_address``
    (fewer than all) for one address: a client that floods logins waits
    behind its own attempts, while everyone else takes the free slots.
    """

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
        )
        self._limiter = trio.CapacityLimiter(settings.password_hash_concurrency)
        #: Never all the slots for one address (unless there is only one).
        self._share = max(
            1,
            min(settings.password_hash_per_address, settings.password_hash_concurrency - 1),
        )
        #: A limiter per address with hashing under way or waiting (then dropped).
        self._per_address: dict[str, tuple[trio.CapacityLimiter, int]] = {}
        self._dummy_hash: str | None = None
        self._dummy_lock = trio.Lock()

    async def hash(self, password: str, address: str = "") -> str:
        """An argon2id hash of ``password``, made in a worker thread (one per address at a time)."""
        return await self._run(address, self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str, address: str = "") -> bool:
        """Check ``password``; with no stored hash, spend the same time and fail.

        Spending the time for unknown names keeps a login attempt from telling
        which names exist.
        """
        if stored_hash is None:
            async with self._dummy_lock:  # made once, by the first who needs it
                if self._dummy_hash is None:
                    self._dummy_hash = await self.hash(_NOT_A_PASSWORD, address)
            await self._run(address, self._verify, self._dummy_hash, password)
            return False
        return await self._run(address, self._verify, stored_hash, password)

    async def _run(self, address: str, func: Callable[..., T], *args: Any) -> T:
        lock, users = self._per_address.get(address) or (trio.CapacityLimiter(self._share), 0)
        self._per_address[address] = (lock, users + 1)
        try:
            async with lock:
                return await trio.to_thread.run_sync(func, *args, limiter=self._limiter)
        finally:
            lock, users = self._per_address[address]
            if users == 1:
                del self._per_address[address]
            else:
                self._per_address[address] = (lock, users - 1)

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether ``stored_hash`` was made with other costs than today's."""
        return self._hasher.check_needs_rehash(stored_hash)
