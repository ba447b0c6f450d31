"""`POST /change`: the change map between two dates of the served index's series (regions with
areas, before -> after labels, sentences, the chips compared), and `GET /change/dates`: its dates."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from rsrag.service import schemas as S
from rsrag.service.deps import get_handle
from rsrag.service.errors import ApiError
from rsrag.service.routes import error_docs
from rsrag.service.state import LibraryHandle

router = APIRouter(tags=["change"])


@router.get("/change/dates", responses=error_docs(400))
def change_dates(handle: LibraryHandle = Depends(get_handle)) -> dict:
    """The dated scenes of the served index, oldest first."""
    from rsrag.change.series import series_dates

    return {"dates": [s.to_dict() for s in series_dates(handle.reader())]}


@router.post("/change", responses=error_docs(400, 422))
def change(body: S.ChangeRequest, handle: LibraryHandle = Depends(get_handle)) -> dict:
    """Change between two dates of the series: the same as `rsrag change BEFORE AFTER --index I --json`."""
    from rsrag.change.concepts import DEFAULT_CONCEPTS
    from rsrag.change.detect import ChangeError, ChangeOptions
    from rsrag.change.series import detect_dates

    options = ChangeOptions()
    if body.threshold is not None:
        options.threshold = body.threshold
    try:
        result = detect_dates(handle.reader(), body.before, body.after, options=options,
                              concepts=body.concepts or list(DEFAULT_CONCEPTS))
    except ChangeError as exc:
        raise ApiError(400, str(exc), code="change") from None
    return result.to_dict()
