"""OpenAPI post-processing: say in the document what the server enforces."""

from __future__ import annotations

from typing import Any


def forbid_unknown_request_fields(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Request bodies refuse unknown fields (no mass assignment): additionalProperties false."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result
