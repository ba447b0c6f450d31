"""The HTTP service: `create_app(library)` (FastAPI) and `serve(...)` (uvicorn), behind `rsrag serve`.

Owns: the API's routes (`routes/`, one module per area), request and response models (`schemas`),
what of an index is public over HTTP (`public`: no server paths, row ids or vectors, in answers or
filters), upload and request limits (`uploads`), the error shape and client-facing messages
(`errors`), the shared read snapshot / single writer (`state`), batched query encoding
(`batching`), lazily loaded models (`components`), the server's connection limits and timeouts
(`server`) and the web page (`static/`).

May import: `rsrag.index` (its public API: `Library`, `Hit`, the errors; never `store` or other
private members), `rsrag.imageio`, `rsrag.data`, `rsrag.encoders` (`cache`, `encoder_accepts`), and
the model packages (`rsrag.rag`, `rsrag.models`) lazily, through `components`. Nothing else in
rsrag imports the service, except the CLI's `serve` command.
"""

from rsrag.service.app import create_app
from rsrag.service.server import running_server, serve
from rsrag.service.uploads import UploadLimits

__all__ = ["create_app", "serve", "running_server", "UploadLimits"]
