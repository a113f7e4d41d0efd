"""Starting the service: `bark-serve`, its embedded Redis and its local worker processes."""
