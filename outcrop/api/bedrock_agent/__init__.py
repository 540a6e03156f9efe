"""bedrock-agent (Agents for Amazon Bedrock): the knowledge base control plane."""
