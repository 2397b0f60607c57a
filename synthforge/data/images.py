"""Labelled images on disk: read an ImageFolder (one subfolder per class), write PNGs.

An image set is held as one ``uint8`` array ``(images, height, width, channels)`` with an integer
label per image and the class names in order: small enough for the sets this reads (thousands of
small images), and what every image generator and check takes. Every image of a set has the same
size and channels; a file that is not a readable image, or of another size, is an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthforge.errors import DataError

#: the file types read from a class folder; other files (a README, .DS_Store) are left alone
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
#: what a set may hold, so a wrong folder is refused before it fills memory
MAX_IMAGES = 200_000
MAX_PIXELS = 512 * 512


@dataclass
class ImageSet:
    """Images ``(n, height, width, channels)`` as ``uint8``, their labels (indices into ``classes``) and files."""

    pixels: np.ndarray
    labels: np.ndarray
    classes: list[str]
    files: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of every image."""
        return tuple(self.pixels.shape[1:])  # type: ignore[return-value]

    def subset(self, index: np.ndarray) -> ImageSet:
        return ImageSet(self.pixels[index], self.labels[index], self.classes, [self.files[i] for i in index])

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(count) for name, count in zip(self.classes, found, strict=True)}


def read_image_folder(folder: Path, *, key: str = "source.images") -> ImageSet:
    """Every image under ``folder/<class>/``, classes in sorted order; a bad file or size names the file."""
    from PIL import Image, UnidentifiedImageError

    if not folder.is_dir():
        raise DataError(f"{key}: {folder} is not a folder; give a folder with one subfolder per class "
                        "(e.g. data/digits/0/*.png, data/digits/1/*.png).")
    class_folders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_folders) < 2:
        raise DataError(f"{key}: {folder} has {len(class_folders)} class subfolder(s); an image set needs at "
                        "least two (one subfolder per class, its images inside).")
    pixels: list[np.ndarray] = []
    labels: list[int] = []
    files: list[str] = []
    shape: tuple[int, ...] | None = None
    first = ""
    for label, class_folder in enumerate(class_folders):
        found = sorted(p for p in class_folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DataError(f"{key}: the class folder {class_folder} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        for path in found:
            if len(files) >= MAX_IMAGES:
                raise DataError(f"{key}: {folder} holds more than {MAX_IMAGES:,} images; sets this large are "
                                "refused for now.")
            try:
                with Image.open(path) as image:
                    image.load()
                    array = _as_array(image)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
                raise DataError(f"{key}: {path} is not a readable image ({error}). Remove or replace the "
                                "file.") from None
            if shape is None:
                shape, first = array.shape, str(path)
                if shape[0] * shape[1] > MAX_PIXELS:
                    raise DataError(f"{key}: {path} is {shape[1]}×{shape[0]} pixels; images up to "
                                    f"{MAX_PIXELS:,} pixels are learned for now. Resize the set first.")
            elif array.shape != shape:
                raise DataError(f"{key}: {path} is {_describe(array.shape)}, but {first} is {_describe(shape)}; "
                                "every image of a set has one size and one colour mode. Resize or convert it.")
            pixels.append(array)
            labels.append(label)
            files.append(str(path.relative_to(folder)))
    return ImageSet(np.stack(pixels), np.asarray(labels, dtype=np.int64), [p.name for p in class_folders], files)


def _as_array(image: object) -> np.ndarray:
    """Grey (L, or 1-bit) stays one channel, anything else becomes RGB: a palette or alpha has no meaning here."""
    mode = getattr(image, "mode", "")
    converted = image.convert("L" if mode in ("L", "1", "I;16", "I", "F") else "RGB")  # type: ignore[attr-defined]
    array = np.asarray(converted, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _describe(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}×{shape[0]} pixels, {'grey' if shape[2] == 1 else 'RGB'}"


def write_png(path: Path, pixels: np.ndarray) -> None:
    """One ``(height, width, channels)`` ``uint8`` image as a PNG."""
    from PIL import Image

    array = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")
