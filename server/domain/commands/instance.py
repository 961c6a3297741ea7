"""The instance's set-up: the first organisation and its administrator, on an empty store."""

from server.actor import SYSTEM
from server.domain.commands.writes import Writer
from server.domain.credentials import new_token, token_hash
from server.domain.permissions import IAM_OWNER, ORG_OWNER
from server.events.base import NewEvent
from server.events.org import OrgAdded, OrgMemberAdded
from server.events.user import MachineUserAdded, PatAdded
from server.store.contract import UniqueViolation


class InstanceCommands(Writer):
    async def set_up_instance(self, org_name: str, admin_user_name: str) -> str | None:
        """On an empty store: the first organisation, and a machine user `admin_user_name` that is
        its IAM_OWNER, with a personal access token. Returns that token, or None when the store
        was set up already (also when another process won the race to do it)."""
        if await self._store.any_org():
            return None
        org_id, user_id, token = self._ids.new_id(), self._ids.new_id(), new_token()
        admin = MachineUserAdded(admin_user_name, "Administrator", "created at first start")
        pat = PatAdded(self._ids.new_id(), token_hash(token), None)
        try:
            await self._append(
                SYSTEM,
                [
                    NewEvent(org_id, 1, org_id, OrgAdded(org_name)),
                    NewEvent(user_id, 1, org_id, admin),
                    NewEvent(user_id, 2, org_id, pat),
                    NewEvent(org_id, 2, org_id, OrgMemberAdded(user_id, (IAM_OWNER, ORG_OWNER))),
                ],
            )
        except UniqueViolation:
            return None
        return token
