"""Settings history: what an admin changed (``log``) and what refers to a row before it may be
deleted (``references``)."""
