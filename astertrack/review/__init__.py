"""Supervisor call review: tags, comments, checklist scores and handled missed calls."""
