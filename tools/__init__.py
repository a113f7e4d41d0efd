"""Developer tools that keep the docs in step with the code (run from the repository root)."""
