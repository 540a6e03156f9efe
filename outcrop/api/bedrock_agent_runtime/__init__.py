"""bedrock-agent-runtime (Agents for Amazon Bedrock Runtime): Retrieve, RetrieveAndGenerate and its stream."""
