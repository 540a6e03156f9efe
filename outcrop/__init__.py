"""Outcrop: a self-hosted Amazon Bedrock."""

__version__ = "0.1.0"
