"""Where call data leaves the box for other systems: signed CRM webhooks (later: analytics and ad-platform exports)."""
