"""The Bedrock dialect: bedrock-runtime and the bedrock control plane, as botocore's models define them."""
