"""Quotas and usage: what each principal may still do, and what it did."""
