"""Thin routers: parse, call the synthesis service, pick a responder."""
