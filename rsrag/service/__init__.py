"""The HTTP service: `create_app(library)` (FastAPI) and `serve(...)` (uvicorn), behind `rsrag serve`."""

from rsrag.service.app import create_app
from rsrag.service.server import running_server, serve
from rsrag.service.uploads import UploadLimits

__all__ = ["create_app", "serve", "running_server", "UploadLimits"]
