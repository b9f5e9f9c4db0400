"""Draw an mmdet/mmseg inferencer's predictions for many image files, one file at a time, so that a file that
cannot be read, or an image the model cannot take, costs only itself: it is named with the reason and the
others are written."""
import os
import os.path as osp
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, List, Sequence, Tuple

import mmcv

from .image_files import IMAGE_EXTENSIONS, ImageFileError, decode_image, describe_conversion, read_header


@dataclass
class ImageLimits:
    """Images the demo refuses instead of running the model on: a side shorter than ``min_side`` pixels (no
    object fits), or more than ``max_pixels`` pixels (decoding alone would take gigabytes)."""
    min_side: int = 8
    max_pixels: int = 64_000_000

    def check(self, width: int, height: int) -> None:
        if min(width, height) < self.min_side:
            raise ImageFileError(f'too small: {width}x{height} (a side below {self.min_side} pixels)')
        if width * height > self.max_pixels:
            raise ImageFileError(f'too large: {width}x{height} = {width * height:,} pixels (the limit is '
                                 f'{self.max_pixels:,})')


@dataclass
class DrawResult:
    written: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)  # (image file, reason)


def draw_each(inferencer, images: Sequence[str], out_dir: str, limits: ImageLimits = ImageLimits(),
              log: Callable[[str], None] = print, **call_kwargs) -> DrawResult:
    """Check, run and draw ``images`` one by one into ``out_dir/<name>.png``, logging one line per image."""
    result = DrawResult()
    for i, (image, name) in enumerate(zip(images, output_names(images)), 1):
        line = f'[{i}/{len(images)}] {image}'
        try:
            header = read_header(image)
            limits.check(header.width, header.height)
            decode_image(image)
            note = describe_conversion(header)
        except ImageFileError as e:
            result.failed.append((image, str(e)))
            log(f'{line}: skipped: {e}')
            continue
        try:
            drawn = inferencer([image], return_vis=True, **call_kwargs)['visualization']
        except Exception as e:  # noqa: BLE001  one image the model cannot take must not stop the others
            reason = f'the model failed on it ({header.width}x{header.height}): {type(e).__name__}: {e}'
            result.failed.append((image, reason))
            log(f'{line}: skipped: {reason}')
            continue
        rgb = drawn[0] if isinstance(drawn, list) else drawn  # MMSegInferencer unwraps single images
        out = osp.join(out_dir, name)
        if not mmcv.imwrite(rgb[..., ::-1], out):
            raise OSError(f'cannot write {out}')
        result.written.append(out)
        log(f'{line} ({header.width}x{header.height}{", " + note if note else ""}) -> {out}')
    return result


def output_names(images: Sequence[str]) -> List[str]:
    """One PNG name per image: the file's stem, or its whole name where two images share a stem (a.jpg and
    a.png), so that no drawing overwrites another."""
    stems = [osp.splitext(osp.basename(p))[0] for p in images]
    counts = Counter(stems)
    return [f'{osp.basename(p) if counts[s] > 1 else s}.png' for p, s in zip(images, stems)]


def list_images(inputs: str) -> Tuple[List[str], List[str]]:
    """The image files of a file or folder argument (by extension, sorted), and the folder's other files."""
    if osp.isdir(inputs):
        names = sorted(n for n in os.listdir(inputs) if osp.isfile(osp.join(inputs, n)))
        images = [osp.join(inputs, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
        others = [osp.join(inputs, n) for n in names if not n.lower().endswith(IMAGE_EXTENSIONS)]
        return images, others
    if not osp.isfile(inputs):
        raise FileNotFoundError(f'{inputs} is neither an image nor a folder')
    return [inputs], []
