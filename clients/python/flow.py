"""The flow of a publisher's back end, through the Python client generated from a running server's
OpenAPI document (`openapi-python-client`, package `attune_client`): create a scoped key, add items,
set consent, post events, decide with explanations, export and erase the person, and check typed
errors on the way. Run by scripts/ci-clients.sh:

    ATTUNE_URL=http://127.0.0.1:7700 ATTUNE_ADMIN_KEY=... PYTHONPATH=<generated> python flow.py
"""

import os
import sys

from attune_client import AuthenticatedClient
from attune_client.api.admin import post_key
from attune_client.api.catalog import get_item, put_items
from attune_client.api.decisions import post_decide
from attune_client.api.events import post_events
from attune_client.api.people import delete_user, get_export, get_user, put_consent
from attune_client.models import (
    ConsentIn,
    DecideIn,
    DecisionOut,
    ErasedOut,
    ErrorBody,
    ErrorDetailCode,
    EventIn,
    EventsIn,
    EventsOut,
    ExportOut,
    ItemIn,
    ItemsIn,
    KeyCreatedOut,
    KeyIn,
    PlacementIn,
    UserOut,
)

PREFIX = "py"
TAGS = ["sleep", "breathing", "stress_relief", "morning", "focus", "fitness"]


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)
    print(f"  ok  {what}")


def main() -> None:
    base_url = os.environ["ATTUNE_URL"]
    admin = AuthenticatedClient(base_url=base_url, token=os.environ["ATTUNE_ADMIN_KEY"])

    # A scoped key for the back end: what the flow needs, not admin.
    scopes = ["catalog:write", "events:write", "decide", "users:read", "users:write"]
    created = post_key.sync(client=admin, body=KeyIn(name=f"{PREFIX}-backend", scopes=scopes))
    check(isinstance(created, KeyCreatedOut) and sorted(created.scopes) == sorted(scopes), "a scoped key is created")
    client = AuthenticatedClient(base_url=base_url, token=created.key)

    # Errors are typed: the envelope and its code.
    missing = get_item.sync_detailed(f"{PREFIX}-no-such-item", client=client)
    check(
        missing.status_code == 404
        and isinstance(missing.parsed, ErrorBody)
        and missing.parsed.error.code == ErrorDetailCode.NOT_FOUND,
        "an unknown item is a typed 404 with code not_found",
    )
    forbidden = post_key.sync_detailed(client=client, body=KeyIn(name="x", scopes=["admin"]))
    check(
        isinstance(forbidden.parsed, ErrorBody) and forbidden.parsed.error.code == ErrorDetailCode.FORBIDDEN,
        "a scoped key cannot create keys (typed 403, code forbidden)",
    )

    items = [
        ItemIn(id=f"{PREFIX}-item-{i}", kind="article", title=f"Article {i}", tags=[TAGS[i % 6], TAGS[(i + 1) % 6]])
        for i in range(8)
    ]
    upserted = put_items.sync(client=client, body=ItemsIn(items=items))
    check(upserted is not None and upserted.upserted == len(items), f"{len(items)} items are created")
    item = get_item.sync(f"{PREFIX}-item-0", client=client)
    check(item is not None and item.title == "Article 0" and item.available, "an item reads back")

    user = f"{PREFIX}-user-1"
    wanted = ConsentIn(personalization=True, contextual=False, analytics=True, email=False, push=False)
    consent = put_consent.sync(user, client=client, body=wanted)
    check(consent is not None and consent.personalization and not consent.contextual, "consent is set")

    events = [
        EventIn(id=f"{PREFIX}-evt-{n}", type_=kind, user=user, item=f"{PREFIX}-item-{i}")
        for n, (kind, i) in enumerate([("view", 0), ("click", 0), ("view", 1), ("purchase", 1), ("view", 2)])
    ]
    posted = post_events.sync(client=client, body=EventsIn(events=events))
    check(
        isinstance(posted, EventsOut) and posted.accepted == len(events) and posted.rejected == [],
        "events are accepted",
    )
    again = post_events.sync(client=client, body=EventsIn(events=events))
    check(isinstance(again, EventsOut) and again.duplicates == len(events), "repeated event ids are duplicates")

    too_few = DecideIn(user=user, placements=[PlacementIn(slot="home_feed", count=0)])
    invalid = post_decide.sync_detailed(client=client, body=too_few)
    check(
        invalid.status_code == 400
        and isinstance(invalid.parsed, ErrorBody)
        and invalid.parsed.error.code == ErrorDetailCode.INVALID_COUNT,
        "a count of 0 is a typed 400 with code invalid_count",
    )
    decision = post_decide.sync(
        client=client, body=DecideIn(user=user, explain=True, placements=[PlacementIn(slot="home_feed", count=4)])
    )
    check(isinstance(decision, DecisionOut) and decision.decision_id.startswith("dec-"), "a decision is made")
    shown = decision.placements[0].items
    check(decision.placements[0].slot == "home_feed" and len(shown) > 0, f"home_feed holds {len(shown)} items")
    check(all(len(i.reasons) >= 1 and i.reasons[0].text for i in shown), "every item is explained")
    check(f"{PREFIX}-item-1" not in [i.id for i in shown], "the purchased item is not recommended")

    profile = get_user.sync(user, client=client)
    check(isinstance(profile, UserOut) and profile.events == len(events), "the profile counts the events")

    export = get_export.sync(user, client=client)
    check(
        isinstance(export, ExportOut) and export.user.id == user and len(export.events) == len(events),
        "the export holds the person's events",
    )

    erased = delete_user.sync(user, client=client)
    check(
        isinstance(erased, ErasedOut) and erased.erased and erased.receipt.events == len(events),
        "the person is erased, with a receipt",
    )
    gone = get_user.sync_detailed(user, client=client)
    check(
        gone.status_code == 404
        and isinstance(gone.parsed, ErrorBody)
        and gone.parsed.error.code == ErrorDetailCode.NOT_FOUND,
        "afterwards the person is unknown (typed 404)",
    )


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 — report any failure as the flow's
        print(f"python client flow FAILED: {error!r}", file=sys.stderr)
        sys.exit(1)
    print("python client flow: passed")
