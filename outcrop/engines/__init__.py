"""Engines: canonical request in, typed events out (see base.Engine)."""
