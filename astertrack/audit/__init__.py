"""Settings history: the audit log of admin changes and what refers to a row before a delete."""
