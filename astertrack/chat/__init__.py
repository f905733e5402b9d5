"""The website chat: conversations between visitors and managers, who is offered them, what streams show."""

# Chat.status: waiting for a manager, answered by one, asking the visitor for a phone (nobody
# replied in time, or nobody was available), closed.
STATUSES = ("waiting", "active", "unanswered", "closed")
OPEN_STATUSES = ("waiting", "active", "unanswered")
AUTHORS = ("visitor", "manager", "system")
# ChatMessage.kind: a typed message, or a system line the reader's language words.
MESSAGE_KINDS = ("text", "claimed", "transferred", "asked_phone", "contact", "closed")
TEXT_MAX = 2000  # characters of one message
CLIENT_ID_MAX = 40
TYPING_SECONDS = 6  # a typing mark lasts this long unless renewed
