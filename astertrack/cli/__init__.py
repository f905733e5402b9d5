"""The ``astertrack`` admin command line."""
