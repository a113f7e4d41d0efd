"""Request dependencies (`Annotated` aliases), overridable in tests."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from ..core.errors import Unauthorized
from .state import AppState


def get_state(conn: HTTPConnection) -> AppState:
    state: AppState = conn.app.state.bark
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def presented_key(conn: HTTPConnection) -> str | None:
    """Bearer token, X-API-Key header, or ?api_key= (browsers cannot set websocket headers)."""
    auth = conn.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return conn.headers.get("x-api-key") or conn.query_params.get("api_key")


def key_is_valid(allowed: list[str], presented: str | None) -> bool:
    if not allowed:
        return True
    if presented is None:
        return False
    given = presented.encode()
    # Compare against every key, in constant time each, without stopping at a match.
    matches = [secrets.compare_digest(given, key.encode()) for key in allowed]
    return any(matches)


def require_api_key(conn: HTTPConnection, state: StateDep) -> None:
    if not key_is_valid(state.settings.all_keys, presented_key(conn)):
        raise Unauthorized("missing or invalid API key (Authorization: Bearer <key>)")


Authorized = Depends(require_api_key)
# Everything uploaded while no keys are configured belongs to this one owner.
OPEN_OWNER = "open"


def owner_of(key: str | None) -> str:
    """Who made an upload, as stored: a hash of the key (never the key itself)."""
    if key is None:
        return OPEN_OWNER
    return hashlib.sha256(b"bark-serve owner:" + key.encode()).hexdigest()[:32]


class Caller:
    """The authenticated caller of a voice route: its owner hash and whether it is an admin."""

    def __init__(self, owner: str, admin: bool) -> None:
        self.owner = owner
        self.admin = admin


def caller(conn: HTTPConnection, state: StateDep) -> Caller:
    settings = state.settings
    key = presented_key(conn)
    if not settings.all_keys:  # no authentication: every caller may change every upload
        return Caller(OPEN_OWNER, admin=True)
    return Caller(owner_of(key), admin=key_is_valid(settings.admin_keys, key) and bool(settings.admin_keys))


CallerDep = Annotated[Caller, Depends(caller)]
