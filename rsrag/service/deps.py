"""What routes get from the app, as FastAPI dependencies: the library handle, the settings, the
image decoder, the models, and the write check.

`create_app` puts one `Service` on `app.state.service`; routes declare what they use
(`handle: LibraryHandle = Depends(get_handle)`), so a route module can be read, and tested with
another `Service`, on its own. The getters are `async` so FastAPI calls them inline rather than in
a worker thread.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rsrag.service.components import Component
from rsrag.service.conversations import ConversationStore
from rsrag.service.errors import ApiError
from rsrag.service.state import LibraryHandle
from rsrag.service.uploads import ImageDecoder

TOKEN_ENV = "RSRAG_API_TOKEN"


@dataclass(frozen=True)
class Settings:
    """The operator's choices for one app (see `create_app`)."""

    token: str = ""  # bearer token for writes; empty: writes are off
    thumb_size: int = 256
    generators: Sequence[str] = ("extractive",)
    # configuration of the enabled generators that need one (url, model, api_key_env: the NAME of the
    # environment variable holding a key; never the key itself)
    generator_configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass
class Service:
    """Everything the routes share: the index, the settings, the decoder (which holds the upload
    limits) and the models."""

    handle: LibraryHandle
    settings: Settings
    decoder: ImageDecoder
    components: dict[str, Component]
    conversations: ConversationStore = field(default_factory=ConversationStore)


def get_service(request: Request) -> Service:
    return request.app.state.service


async def get_handle(request: Request) -> LibraryHandle:
    return get_service(request).handle


async def get_settings(request: Request) -> Settings:
    return get_service(request).settings


async def get_conversations(request: Request) -> ConversationStore:
    return get_service(request).conversations


async def get_decoder(request: Request) -> ImageDecoder:
    return get_service(request).decoder


async def get_components(request: Request) -> dict[str, Component]:
    return get_service(request).components


bearer = HTTPBearer(auto_error=False, description="the server's RSRAG_API_TOKEN")


async def require_writer(creds: HTTPAuthorizationCredentials | None = Depends(bearer),
                         settings: Settings = Depends(get_settings)) -> None:
    """Writes need the token; with none configured they are off."""
    token = settings.token
    if not token:
        raise ApiError(403, f"writes are disabled on this server (start it with {TOKEN_ENV} set)",
                       code="writes_disabled")
    if creds is None:
        raise ApiError(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(creds.credentials.encode(), token.encode()):
        raise ApiError(403, "invalid bearer token")
