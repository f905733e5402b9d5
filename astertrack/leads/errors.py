"""The one error the leads room raises: bad input named by its field, so a form, the admin and the
CRM endpoint can each answer on the right field (400), nothing half-written."""

from __future__ import annotations


class LeadError(ValueError):
    """Input the leads room refuses; ``field`` names it (``"email"``, ``"currency"``, ``"state"``...)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
