"""The worker process: one loaded BarkPipeline consuming the Redis job stream."""
