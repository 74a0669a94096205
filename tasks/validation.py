"""Worker-side payload validation: the same models as the API, applied again at the boundary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from tasks.errors import InvalidPayload
from tasks.models import Payload

P = TypeVar("P", bound=Payload)


def validate(model: type[P], payload: Mapping[str, Any]) -> P:
    """`payload` as a `model`, or `InvalidPayload` (permanent: a retry would fail the same way)."""
    try:
        return model.model_validate(dict(payload))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<payload>'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidPayload(f"invalid {model.__name__}: {problems}") from None
