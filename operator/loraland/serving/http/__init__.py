"""The HTTP front end (FastAPI). Each module decodes, calls the service, encodes."""
