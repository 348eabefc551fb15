"""What a model sees: one image file made into the array training uses, and the description
of that preprocessing that goes into a checkpoint, so prediction repeats it exactly.

An image becomes uint8 (C, H, W) through ``load_image`` (image folders and heterocnn-predict
both call it), and the training loop, ``hc.predict`` and ``hc.evaluate`` scale uint8 by
``UINT8_SCALE`` (1/255) to float32 in [0, 1]. Pillow (``heterocnn[images]``) decodes.
"""

import io

import numpy as np

from .errors import DataFormatError, InvalidValueError
from .extras import require

UINT8_SCALE = np.float32(1 / 255)
"""uint8 images are multiplied by this (float32) to give the network's float32 input."""

RESIZE_MODES = ("stretch", "crop")
"""How an image is brought to (H, W): "stretch" resizes the whole image, not keeping its
aspect ratio; "crop" first cuts the largest centred box of the target's aspect ratio, then
resizes it. Both with Pillow's bilinear filter (antialiased when shrinking)."""

CHANNELS = {1: "L", 3: "RGB"}
"""Channels -> the Pillow mode images are converted to (grey: ITU-R 601-2 luma)."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
"""File names (any case) read as images; other files are ignored."""

_EXIF_FORMATS = ("JPEG", "MPO", "WEBP", "TIFF")
_FORMAT_OF = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF",
              ".webp": "WEBP"}  # tried first (quicker); any format Pillow knows after that


def check_options(size, channels, resize):
    """(H, W), channels and resize mode, validated; InvalidValueError naming the bad one."""
    try:
        h, w = (int(d) for d in size)
    except (TypeError, ValueError):
        raise InvalidValueError(f"size must be (H, W), got {size!r}") from None
    if h < 1 or w < 1 or h > 4096 or w > 4096:
        raise InvalidValueError(f"size must be (H, W) with 1 <= H, W <= 4096, got {size!r}")
    if channels not in CHANNELS:
        raise InvalidValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if resize not in RESIZE_MODES:
        raise InvalidValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    return (h, w), channels, resize


def _convert(img, mode):
    """img in Pillow mode ``mode`` ("L" or "RGB"). Alpha is dropped (as torchvision's loader
    does); 16-bit grey keeps its top 8 bits; palette images go through RGBA."""
    if img.mode.startswith("I;16"):
        img = img.convert("I").point(lambda v: v * (1 / 256))
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img if img.mode == mode else img.convert(mode)


def _fit(img, size, resize, Image):
    """img resized to ``size`` (H, W) as ``resize`` says."""
    h, w = size
    box = None
    if resize == "crop":
        iw, ih = img.size
        if iw * h > ih * w:    # wider than the target: keep the full height
            cw = ih * w / h
            box = ((iw - cw) / 2, 0, (iw + cw) / 2, ih)
        elif iw * h < ih * w:  # taller: keep the full width
            ch = iw * h / w
            box = (0, (ih - ch) / 2, iw, (ih + ch) / 2)
    if box is None and img.size == (w, h):
        return img
    return img.resize((w, h), Image.BILINEAR, box=box)


def _open(Image, data, name):
    """The Pillow image of ``data``: tried as the format its name says first."""
    hint = _FORMAT_OF.get(name[name.rfind("."):].lower()) if "." in name else None
    if hint is not None:
        try:
            return Image.open(io.BytesIO(data), formats=(hint,))
        except Image.UnidentifiedImageError:
            pass
    return Image.open(io.BytesIO(data))


def decode(data, size, channels, resize, name):
    """uint8 (C, H, W) from the bytes ``data`` of an image file (``name`` for errors): the
    first frame; EXIF orientation applied (JPEG, WebP, TIFF); JPEGs at least twice the target
    decoded at a reduced DCT scale (Pillow's draft mode) first; converted to grey or RGB
    (CHANNELS); resized (RESIZE_MODES). DataFormatError naming the file when it is not an
    image Pillow can read in full (unknown format, truncated, corrupt)."""
    Image = require("PIL.Image", "images", "reading image files")
    mode = CHANNELS[channels]
    try:
        img = _open(Image, data, name)
        if img.format == "JPEG":
            img.draft(mode, (size[1] * 2, size[0] * 2))
        img.load()
        if img.format in _EXIF_FORMATS:
            from PIL import ImageOps

            img = ImageOps.exif_transpose(img)
        img = _fit(_convert(img, mode), size, resize, Image)
        out = np.frombuffer(img.tobytes(), dtype=np.uint8)  # quicker than np.asarray(img)
    except Exception as e:  # noqa: BLE001 (a corrupt file can make a Pillow plugin raise anything)
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise DataFormatError(f"{name}: not a readable image ({reason})") from None
    return out.reshape(1, *size) if channels == 1 else out.reshape(*size, 3).transpose(2, 0, 1)


def load_image(path, size=(28, 28), channels=1, resize="stretch"):
    """The image file at ``path`` as uint8 (channels, H, W), exactly as image folders load
    their images for training (see ``decode``). The network's input is this times
    UINT8_SCALE."""
    size, channels, resize = check_options(size, channels, resize)
    with open(path, "rb") as f:
        data = f.read()
    return decode(data, size, channels, resize, str(path)).copy()  # writable, C order


def image_options(meta):
    """(size, channels, resize) that images for a checkpoint's model are made with, from the
    meta hc.load returns: its "image" entry (written when it was trained on an image
    folder), else the input shape with "stretch". InvalidValueError when the meta has
    neither or the model was trained on float data heterocnn did not scale."""
    image = meta.get("image")
    if isinstance(image, dict):
        return check_options(image.get("size"), image.get("channels"), image.get("resize"))
    shape = meta.get("input_shape")
    if not (isinstance(shape, list) and len(shape) == 3):
        raise InvalidValueError("the checkpoint does not say what images its model takes (no "
                                "'image' or 3-D 'input_shape' in its meta)")
    return check_options(shape[1:], shape[0], "stretch")


def check_normalisation(meta):
    """Raise InvalidValueError unless the checkpoint's model was trained on uint8 images that
    heterocnn scaled by UINT8_SCALE (what load_image + hc.predict feed it)."""
    norm = meta.get("normalisation")
    if norm is None:
        return  # older checkpoints: heterocnn's data sets are uint8
    if norm.get("input_dtype") != "uint8" or norm.get("scale") != float(UINT8_SCALE):
        raise InvalidValueError(f"the checkpoint's model was trained on inputs normalised as "
                                f"{norm}, not on uint8 images scaled by 1/255; prepare its "
                                "inputs the same way and call hc.predict")


def data_meta(data, X):
    """What a checkpoint records about the training data ``data`` (X its images): the class
    names (of a Dataset), the input shape (C, H, W), the channels, the normalisation
    ({"input_dtype": "uint8", "scale": 1/255} for uint8 images, {"input_dtype": "float32",
    "scale": 1.0} for float32 ones, which heterocnn passes on unchanged) and, for an image
    folder, how its files were made into arrays ({"size", "channels", "resize"})."""
    shape = [int(d) for d in X.shape[1:]]
    meta = {"input_shape": shape,
            "normalisation": ({"input_dtype": "uint8", "scale": float(UINT8_SCALE)}
                              if X.dtype == np.uint8 else {"input_dtype": "float32", "scale": 1.0})}
    if len(shape) == 3:
        meta["channels"] = shape[0]
    classes = getattr(data, "classes", None)
    if classes is not None:
        meta["classes"] = list(classes)
    image = getattr(data, "preprocessing", None)
    if image is not None:
        meta["image"] = dict(image)
    return meta
