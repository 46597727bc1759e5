"""The tracking server: a FastAPI app built by `create_app(settings)`, with no import-time side effects."""

from modelyard.server.app import ServerSettings, create_app

__all__ = ["ServerSettings", "create_app"]
