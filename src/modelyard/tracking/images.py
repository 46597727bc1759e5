"""Turn numpy arrays into PIL images for `log_image`."""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidArgument


def to_pil(image: Any) -> Any:
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    import numpy as np

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InvalidArgument(f"Image must be H×W, H×W×3 or H×W×4; got shape {arr.shape}.")
    if arr.dtype.kind == "f":
        if np.nanmin(arr) < 0 or np.nanmax(arr) > 1:
            raise InvalidArgument(
                "A float image must have values in [0, 1]; scale it or convert it to uint8."
            )
        arr = (arr * 255).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise InvalidArgument(
                f"An integer image must have values in [0, 255]; got {arr.min()}..{arr.max()}."
            )
        arr = arr.astype(np.uint8)
    return Image.fromarray(arr)
