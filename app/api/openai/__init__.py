"""The OpenAI-compatible speech route and its voice-name table."""
