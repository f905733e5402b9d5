"""Reading the routing configuration: the enabled rules with their groups' members and the managers
that may take calls.  The AGI's snapshot and the callbacks route by the same reading."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import Manager, ManagerGroup, RoutingRule, manager_group_members
from astertrack.routing.rules import RuleView


def rule_view(rule: RoutingRule, member_ids: tuple[int, ...], queue_name: str | None) -> RuleView:
    return RuleView(
        id=rule.id, name=rule.name, priority=rule.priority, site_id=rule.site_id, match=rule.match or {},
        strategy=rule.strategy or "round_robin", member_ids=member_ids, queue_name=queue_name,
        sticky=bool(rule.sticky), sticky_days=rule.sticky_days or 0, ring_timeout=rule.ring_timeout,
        max_attempts=rule.max_attempts, schedule=rule.schedule or {},
        after_hours_destination=rule.after_hours_destination, fallback_destination=rule.fallback_destination,
        rr_cursor=rule.rr_cursor or 0,
    )


def load_rules(session: Session) -> list[RuleView]:
    """Enabled, unarchived rules; an archived group has no members and no queue, an archived
    manager is nobody's member."""
    rules = session.execute(select(RoutingRule).where(RoutingRule.enabled.is_(True),
                                                      RoutingRule.archived_at.is_(None))).scalars().all()
    members: dict[int, list[int]] = {}
    for gid, mid in session.execute(select(manager_group_members.c.group_id, manager_group_members.c.manager_id)
                                    .join(Manager, Manager.id == manager_group_members.c.manager_id)
                                    .where(Manager.archived_at.is_(None))):
        members.setdefault(gid, []).append(mid)
    queues = dict(session.execute(select(ManagerGroup.id, ManagerGroup.queue_name)
                                  .where(ManagerGroup.archived_at.is_(None))).all())
    return [rule_view(r, tuple(sorted(members.get(r.group_id, ()))) if r.group_id in queues else (),
                      queues.get(r.group_id)) for r in rules]


def enabled_manager_ids(session: Session) -> tuple[int, ...]:
    """Managers that may be offered calls at all (enabled, not archived), in id order."""
    return tuple(sorted(session.execute(select(Manager.id).where(Manager.enabled.is_(True),
                                                                 Manager.archived_at.is_(None))).scalars()))
