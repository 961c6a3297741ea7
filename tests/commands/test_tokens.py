"""server/domain/commands/tokens.py: the event an access token is issued with."""

from datetime import timedelta
from pathlib import Path

from server.actor import Actor, by_client_secret
from server.domain.credentials import token_hash
from server.events.base import NewEvent
from server.events.token import AccessTokenAdded, AccessTokenRevoked
from server.store.contract import UserRecord
from tests.commands.table import GENERATED, NOW, NOW_MICROS, ORG, Case, machine_added, org_added, run, table

USER = UserRecord("10", ORG, "bot10", "machine", 1, NOW, NOW, "active")
# The client at the token endpoint: the actor of the token it earns.
CLIENT = by_client_secret(Actor(request_id="r1", peer="10.0.0.9", transport="oauth"), "10", ORG, "71")
HOUR = timedelta(hours=1)


@table(
    Case(
        "a token of its own aggregate, for the user's secret",
        [org_added(), machine_added("10")],
        lambda c: c.issue_access_token(USER, "71", "openid", NOW + HOUR, CLIENT),
        [
            NewEvent(
                "101",
                1,
                ORG,
                AccessTokenAdded("10", GENERATED, NOW_MICROS + 3_600_000_000, "openid", "71"),
                actor=CLIENT,
            )
        ],
    ),
)
async def test_token_commands(case: Case, tmp_path: Path) -> None:
    answer, [pushed] = await run(case, tmp_path)
    assert isinstance(answer, str)
    assert isinstance(pushed.event, AccessTokenAdded)
    assert pushed.event.token_hash == token_hash(answer)


ISSUED = NewEvent("101", 1, ORG, AccessTokenAdded("10", "ab12", NOW_MICROS + 3_600_000_000, "api", "71"))


@table(
    Case(
        "revoked: the next event of the token, by the client",
        [org_added(), machine_added("10"), ISSUED],
        lambda c: c.revoke_access_token("101", "10", ORG, CLIENT),
        [NewEvent("101", 2, ORG, AccessTokenRevoked("10"), actor=CLIENT)],
    ),
    Case(
        "revoked already: nothing more",
        [org_added(), machine_added("10"), ISSUED, NewEvent("101", 2, ORG, AccessTokenRevoked("10"))],
        lambda c: c.revoke_access_token("101", "10", ORG, CLIENT),
        [],
    ),
    Case(
        "never issued: nothing",
        [org_added(), machine_added("10")],
        lambda c: c.revoke_access_token("999", "10", ORG, CLIENT),
        [],
    ),
)
async def test_revocation(case: Case, tmp_path: Path) -> None:
    answer, pushed = await run(case, tmp_path)
    assert answer is bool(pushed)
