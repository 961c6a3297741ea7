"""Events of the instance as a whole (aggregate `instance`, one: INSTANCE_ID)."""

from dataclasses import dataclass

from server.events.base import AGGREGATE_INSTANCE, Event


@dataclass(frozen=True)
class IamOwnerLeft(
    Event, type_name="instance.iam_owner.left", aggregate=AGGREGATE_INSTANCE, changes_power=True
):
    """An active IAM_OWNER is one no more (deactivated, removed, or its last IAM_OWNER membership
    ended). Appended with that change, so that the instance's sequence orders every change that
    takes an owner away: of two at once, one decides again and may find its owner the last."""

    user_id: str
