"""Supervisor call review: tags, comments, checklist scores and handled missed calls.

``scoring`` is the pure score formula, ``actions`` the writes (each keeps history), and
``conditions`` the SQL pieces the call log, the reports and the exports filter and show with.
"""
