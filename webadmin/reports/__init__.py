"""Reports for marketers and supervisors: sources, missed calls, first/repeat, managers, funnel, pools."""

from flask import Blueprint

bp = Blueprint("reports", __name__)

from webadmin.reports import views, whatif  # noqa: E402,F401  (whatif: pool health's "what if", #27)
