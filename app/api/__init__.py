"""The HTTP and websocket API (FastAPI). Never imports torch."""
