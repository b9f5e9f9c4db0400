"""Write the drawings of an mmdet/mmseg inferencer as PNG files (tools/image_demo.py)."""
import os
import os.path as osp
from typing import List, Sequence

import mmcv


def write_visualizations(inferencer, images: Sequence[str], out_dir: str, prefix: str = '', **call_kwargs) -> List[str]:
    """Run ``inferencer`` on ``images`` and save each drawing as ``out_dir/<prefix><stem>.png``."""
    drawn = inferencer(list(images), return_vis=True, **call_kwargs)['visualization']
    if len(images) == 1 and not isinstance(drawn, list):
        drawn = [drawn]  # MMSegInferencer unwraps the list for a single image
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for image, rgb in zip(images, drawn):
        name = osp.join(out_dir, f'{prefix}{osp.splitext(osp.basename(image))[0]}.png')
        mmcv.imwrite(rgb[..., ::-1], name)
        written.append(name)
    return written
