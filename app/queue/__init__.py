"""The Redis Streams job queue: key names, wire messages, and the API/worker sides."""
