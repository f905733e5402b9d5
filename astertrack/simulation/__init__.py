"""The traffic simulator (#27): attribution accuracy measured, not assumed (docs/simulation.md)."""
