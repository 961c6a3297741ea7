"""Commands: every change to the service's state, one module per aggregate or feature, each a
class on the write loop (writes.py): orgs.py, users.py, secrets.py (client secrets and the policy
for them), machine_keys.py, federation.py (trusted issuers, federated credentials), pats.py,
projects.py (projects, their roles, API applications and user grants), app_keys.py (the keys of
API applications with private_key_jwt), tokens.py (access tokens), metadata.py (a user's
metadata) and instance.py (the set-up at first start).

Commands is all of them on one object, for the transports and app.py. A new module (machine keys,
projects) is a new file whose class derives from Writer, and one more base here.
"""

from server.domain.commands.app_keys import AppKeyCommands
from server.domain.commands.federation import FederationCommands
from server.domain.commands.instance import InstanceCommands
from server.domain.commands.machine_keys import MachineKeyCommands
from server.domain.commands.metadata import MetadataCommands
from server.domain.commands.orgs import OrgCommands
from server.domain.commands.pats import PatCommands
from server.domain.commands.secrets import SecretCommands
from server.domain.commands.tokens import TokenCommands
from server.domain.commands.users import UserCommands
from server.domain.commands.webkeys import WebKeyCommands


class Commands(
    OrgCommands,
    UserCommands,
    SecretCommands,
    MachineKeyCommands,
    FederationCommands,
    PatCommands,
    AppKeyCommands,  # and ProjectCommands, which it builds on
    TokenCommands,
    MetadataCommands,
    WebKeyCommands,
    InstanceCommands,
):
    """Every command. Its constructor is Writer's: the store, the hasher, the id generator, how
    many times a write is tried, and the clock."""
