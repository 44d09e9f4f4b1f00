"""Images that are not brain MRI slices, drawn the way issue 14 found them answered as diagnoses: a grayscale
cat on black and white text on black (224 x 224 x 3 uint8, gray in all three channels)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SIZE = 224


def cat_on_black(side: int = 150) -> np.ndarray:
    """scikit-image's cat photo (Chelsea), grayscale, shrunk and centred on a black canvas."""
    import skimage.data

    cat = Image.fromarray(skimage.data.chelsea()).convert("L").resize((side, side), Image.BILINEAR)
    canvas = Image.new("L", (SIZE, SIZE), 0)
    canvas.paste(cat, ((SIZE - side) // 2, (SIZE - side) // 2))
    return np.repeat(np.asarray(canvas)[..., None], 3, axis=2)


def text_on_black() -> np.ndarray:
    """White lines of text on black, in PIL's built-in font."""
    img = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(img)
    for line in range(12):
        draw.text((6, 6 + 18 * line), f"Scan notes {line}: nothing to see here {line * 7}", fill=255)
    return np.repeat(np.asarray(img)[..., None], 3, axis=2)
