"""Reading image files that may be broken or odd, with a reason a person can act on instead of a traceback.

Shared by the inference tools (a bad file is skipped, the others processed) and the dataset check
(mlla_dense.datasets.check). The header is read with Pillow, which gives the size without decoding the pixels
(cheap, and safe against huge images); the pixels are decoded by OpenCV exactly as mmcv's LoadImageFromFile
does (``cv2.IMREAD_COLOR``: grey replicated to 3 channels, alpha dropped, 16-bit scaled to 8-bit), so a file
that passes here is read the same way by the pipelines.
"""
import os
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class ImageFileError(ValueError):
    """An image file that cannot be used; the message says why."""


@dataclass
class ImageHeader:
    width: int
    height: int
    format: str  # Pillow's name of the format: 'JPEG', 'PNG', ...
    mode: str    # Pillow's pixel mode: 'L', 'P', 'RGB', 'RGBA', 'I;16', ...


def read_header(path: str) -> ImageHeader:
    """Size, format and pixel mode from the file's header; raises ImageFileError for a missing, empty,
    non-image or truncated file. A JPEG without its end marker is decoded to tell a truncated file from one with
    trailing bytes (rare, so the check stays cheap)."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ImageFileError(f'cannot read the file: {e.strerror}') from None
    if size == 0:
        raise ImageFileError('empty file (0 bytes)')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)  # size limits are the caller's
            with Image.open(path) as image:
                header = ImageHeader(image.width, image.height, image.format, image.mode)
                if image.format == 'JPEG' and not _ends_with_jpeg_end_marker(path):
                    image.load()
    except Image.DecompressionBombError as e:
        raise ImageFileError(f'too large to open: {e}') from None
    except Image.UnidentifiedImageError:
        with open(path, 'rb') as f:
            start = f.read(16)
        raise ImageFileError(f'not an image (unknown format, {size} bytes starting with {start!r})') from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageFileError(f'corrupt or truncated {_format_name(path)}: {e}') from None
    if header.width < 1 or header.height < 1:
        raise ImageFileError(f'the header gives an empty image ({header.width}x{header.height})')
    return header


def decode_image(path: str) -> np.ndarray:
    """The pixels as the pipelines get them (H x W x 3 uint8, BGR), after :func:`read_header`'s checks."""
    header = read_header(path)
    pixels = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise ImageFileError(f'the {header.format} data does not decode (OpenCV cannot read it)')
    return pixels


def describe_conversion(header: ImageHeader) -> str:
    """How the pipelines turn this image into 8-bit BGR, for progress lines ('' when nothing changes)."""
    notes = {'1': 'black-and-white to 3 channels', 'L': 'grey to 3 channels', 'LA': 'grey to 3 channels, alpha dropped',
             'P': 'palette to 3 channels', 'PA': 'palette to 3 channels, alpha dropped', 'RGBA': 'alpha dropped',
             'CMYK': 'CMYK to BGR'}
    if header.mode.startswith('I;16') or header.mode == 'I':
        return 'grey 16-bit scaled to 8-bit, 3 channels'
    return notes.get(header.mode, '')


def _ends_with_jpeg_end_marker(path: str) -> bool:
    with open(path, 'rb') as f:
        f.seek(max(0, os.path.getsize(path) - 2))
        return f.read() == b'\xff\xd9'


def _format_name(path: str) -> str:
    ext = os.path.splitext(path)[1].lstrip('.').upper()
    return 'JPEG' if ext in ('JPG', 'JPEG') else (ext or 'image')
