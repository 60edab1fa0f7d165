"""loraland's Locust suite: ``locust -f <this file> --host URL [--api tgi|openai|grpc] ...``.

Everything lives in :mod:`loraland.loadtest.users`; the suite's own flags (``--api``,
``--adapters``, ``--adapter-dist``, ``--prompt-file``, ``--max-new-tokens``, ...) are
listed by ``loraland loadtest sweep --help`` (Locust's ``--help`` does not show them).
"""

from loraland.loadtest.users import LLMUser

__all__ = ["LLMUser"]
