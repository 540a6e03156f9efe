"""Vendor body formats that more than one dialect speaks (Bedrock's InvokeModel carries Anthropic
Messages bodies; the Anthropic API speaks them natively). Pure codecs, no HTTP: dialects import
these, never each other."""
