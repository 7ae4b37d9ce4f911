"""Builders of tiny models and data for tests and CPU smoke runs (nothing here downloads anything)."""
