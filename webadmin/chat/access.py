"""Who may see and act on which chat: staff see every chat; a manager sees the chats offered to
them (``Chat.offered_to``), those offered to nobody, and their own.  One rule for the page, the
actions and the stream (the stream applies it to plain data, off the request)."""

from __future__ import annotations

from collections.abc import Iterable

from flask import abort
from flask_login import current_user

from astertrack.db.models import Chat
from webadmin.db import get_session


def visible(offered_to: Iterable[int] | None, owner_id: int | None, *, staff: bool, manager_id: int | None) -> bool:
    """May this viewer see a chat offered to ``offered_to`` and held by ``owner_id``?"""
    if staff:
        return True
    if manager_id is None:
        return False
    if owner_id is not None:
        return owner_id == manager_id
    offered = list(offered_to or [])
    return not offered or manager_id in offered


def may_see(chat: Chat) -> bool:
    return visible(chat.offered_to, chat.manager_id, staff=current_user.is_staff, manager_id=current_user.manager_id)


def visible_chat_or_404(chat_id: int) -> Chat:
    """404 both for a missing chat and for one the user may not see: nothing leaks."""
    chat = get_session().get(Chat, chat_id)
    if chat is None or not may_see(chat):
        abort(404)
    return chat


def may_transfer(chat: Chat) -> bool:
    """The chat's owner and staff hand a chat on."""
    return current_user.is_staff or (chat.manager_id is not None and chat.manager_id == current_user.manager_id)


def may_answer(chat: Chat) -> bool:
    """Reply, type, mark read: a user with a manager, on a chat nobody has or their own."""
    return current_user.manager_id is not None and chat.manager_id in (None, current_user.manager_id)
