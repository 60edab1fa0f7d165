"""Where models and adapters live: URI parsing, fetching to local disk, atomic publishing.

Every component (trainer, server, evaluation, demo) turns a URI into a local directory
through :func:`loraland.storage.resolve`, so a URI means the same thing everywhere.
"""

from loraland.storage.errors import StorageError
from loraland.storage.resolve import resolve
from loraland.storage.uri import ArtifactURI, Scheme, parse_uri

__all__ = ["ArtifactURI", "Scheme", "StorageError", "parse_uri", "resolve"]
