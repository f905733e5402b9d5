"""astertrack core: models, configuration and the business rules the three apps share.

The core imports none of the apps (agi, ami_listener, webadmin, tracker).
"""

__version__ = "0.1.0"
