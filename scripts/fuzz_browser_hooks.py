"""Schemathesis hooks for fuzzing Attune with a browser key (README, "Tests").

Load with `SCHEMATHESIS_HOOKS=fuzz_browser_hooks` (this directory on `PYTHONPATH`) and set
`ATTUNE_FUZZ_SIGNING_SECRET` to the browser key's `signing_secret` (from `POST /v1/keys`).

Random strings almost never make a valid visitor id or identity token, so without help every
generated browser request would stop at the visitor check. These hooks turn two of every three
generated `anonymous_id`s (and consent path ids) into visitor ids (`anon-` + 32 hex), sign a
valid `user_token` for two of every three generated `user`s, and keep one subject where a body
names both, so the fuzzer reaches what lies behind the checks as well as their refusals.
"""

import hashlib
import hmac
import os
import time

import schemathesis

SECRET = os.environ.get("ATTUNE_FUZZ_SIGNING_SECRET", "")


def _choose(value) -> bool:
    """Deterministic two-in-three choice from the generated value."""
    return hashlib.sha256(repr(value).encode()).digest()[0] % 3 != 0


def _visitor(value) -> str:
    return "anon-" + hashlib.sha256(repr(value).encode()).hexdigest()[:32]


def _token(user: str) -> str:
    expires = int(time.time()) + 3600
    tag = hmac.new(SECRET.encode(), f"{user}.{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{tag}"


def _subject(body: dict, both: bool) -> None:
    # Both subjects at once is refused (`invalid_subject`) but where both are the point
    # (`identify`): keep one in two of three cases.
    if not both and isinstance(body.get("anonymous_id"), str) and isinstance(body.get("user"), str) and _choose(body):
        del body["user" if _choose(body["user"]) else "anonymous_id"]
    anonymous = body.get("anonymous_id")
    if isinstance(anonymous, str) and _choose(anonymous):
        body["anonymous_id"] = _visitor(anonymous)
    user = body.get("user")
    if SECRET and isinstance(user, str) and _choose(user):
        body["user_token"] = _token(user)


@schemathesis.hook
def map_case(context, case):
    body = case.body
    if isinstance(body, dict):
        _subject(body, case.path == "/v1/identify")
        events = body.get("events")
        for event in events if isinstance(events, list) else []:
            if isinstance(event, dict):
                _subject(event, False)
    if case.path.endswith("/consent"):
        user = case.path_parameters.get("id") if case.path_parameters else None
        if isinstance(user, str) and _choose(user):
            case.path_parameters["id"] = _visitor(user)
    return case
