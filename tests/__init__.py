"""The test suite: tests/<room> mirrors app/ and bark_core/; tests/support holds the shared real parts."""
