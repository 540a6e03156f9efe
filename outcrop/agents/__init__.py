"""Bedrock Agents: agent definitions (definition.py), the orchestration loop on inference (loop.py) and its sessions."""
