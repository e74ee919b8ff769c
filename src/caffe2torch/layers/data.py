"""Layers that feed the net: Input and the data layers of training nets.

They become the net's inputs. Their shapes come from their parameters where those give them
(``input_param``, ``batch_size``, ``new_height``/``new_width``, ``crop_size``...), otherwise
from ``--input-shape``. Label tops that nothing uses after the training-only layers are
dropped go away with them.
"""
from __future__ import annotations

from . import register
from .base import Layer, LayerError, Schema, Shape


class Source(Layer):
    SOURCE = True
    BOTTOMS = (0, 0)
    TOPS = (1, 2)

    def source_shapes(self) -> list[tuple[Shape | None, str]]:
        """For each top: its shape if the parameters fix it, else None and what is known."""
        raise NotImplementedError

    def infer(self, inputs):  # shapes come from source_shapes / --input-shape
        raise LayerError("a data layer has no bottoms to infer from")

    def _crop(self) -> int:
        return self.proto.transform_param.crop_size

    def _image_and_label(self, batch: int | None, channels: int | None, h: int, w: int,
                         label: Shape | None = None):
        crop = self._crop()
        if crop:
            h = w = crop
        known = []
        if batch:
            known.append(f"batch {batch}")
        if channels:
            known.append(f"{channels} channels")
        if h and w:
            known.append(f"{h}x{w}")
        if batch and channels and h and w:
            image: tuple[Shape | None, str] = ((batch, channels, h, w), "")
        else:
            image = (None, ", ".join(known))
        out = [image]
        if self.n_tops == 2:
            lab = label if label is not None else ((batch,) if batch else None)
            out.append((lab, f"batch {batch}" if batch else ""))
        return out


@register
class Input(Source):
    TYPES = ("Input",)
    TOPS = (1, None)
    OPENCV = frozenset({"Input"})

    def source_shapes(self):
        shapes = [tuple(s.dim) for s in self.proto.input_param.shape]
        if not shapes:
            return [(None, "")] * self.n_tops
        if len(shapes) == 1:
            shapes = shapes * self.n_tops
        if len(shapes) != self.n_tops:
            raise LayerError(f"{len(shapes)} shapes for {self.n_tops} tops")
        return [(s, "") for s in shapes]


@register
class Data(Source):
    """LevelDB/LMDB ``Data``: the batch size is known, the image size is in the database."""

    TYPES = ("Data", "AnnotatedData")
    READS_IMAGES = True

    def source_shapes(self):
        p = self.proto.data_param
        return self._image_and_label(p.batch_size, None, 0, 0)


@register
class ImageData(Source):
    TYPES = ("ImageData",)
    READS_IMAGES = True
    SCHEMA = Schema(
        fields={
            "ImageDataParameter": (("optional", "bool", "images_in_color", 100, "true", False),),
        },
    )

    TOPS = (2, 2)  # ExactNumTopBlobs() is 2: data and label

    def source_shapes(self):
        p = self.proto.image_data_param
        color = p.is_color and p.images_in_color
        return self._image_and_label(p.batch_size, 3 if color else 1, p.new_height, p.new_width)


@register
class DenseImageData(Source):
    """SegNet's image + label-image layer."""

    TYPES = ("DenseImageData",)
    READS_IMAGES = True
    # SegNet's data layer for images and label images.
    SCHEMA = Schema(
        messages={
            "DenseImageDataParameter": (
                ("optional", "string", "source", 1, None, False),
                ("optional", "uint32", "batch_size", 2, None, False),
                ("optional", "uint32", "rand_skip", 3, "0", False),
                ("optional", "bool", "shuffle", 4, "false", False),
                ("optional", "uint32", "new_height", 5, "0", False),
                ("optional", "uint32", "new_width", 6, "0", False),
                ("optional", "bool", "is_color", 7, "true", False),
                ("optional", "string", "mean_file", 8, None, False),
                ("optional", "string", "root_folder", 9, ("str", ""), False),
            ),
        },
        layer_fields=(
            ("DenseImageDataParameter", "dense_image_data_param", 10138),  # SegNet: 138
        ),
    )

    TOPS = (2, 2)  # ExactNumTopBlobs() is 2: data and label

    def source_shapes(self):
        p = self.proto.dense_image_data_param
        h, w = p.new_height, p.new_width
        if self._crop():
            h = w = self._crop()
        label = (p.batch_size, 1, h, w) if p.batch_size and h and w else None
        return self._image_and_label(p.batch_size, 3 if p.is_color else 1, h, w, label)


@register
class MemoryData(Source):
    TYPES = ("MemoryData",)

    TOPS = (2, 2)  # ExactNumTopBlobs() is 2: data and label

    def source_shapes(self):
        p = self.proto.memory_data_param
        return self._image_and_label(p.batch_size, p.channels, p.height, p.width)


@register
class WindowData(Source):
    TYPES = ("WindowData",)
    READS_IMAGES = True

    TOPS = (2, 2)  # ExactNumTopBlobs() is 2: data and label

    def source_shapes(self):
        p = self.proto.window_data_param
        return self._image_and_label(p.batch_size, 3, 0, 0)


@register
class HDF5Data(Source):
    TYPES = ("HDF5Data",)
    TOPS = (1, None)

    def source_shapes(self):
        p = self.proto.hdf5_data_param
        hint = f"batch {p.batch_size}" if p.batch_size else ""
        return [(None, hint)] * self.n_tops


@register
class DummyData(Source):
    TYPES = ("DummyData",)
    TOPS = (1, None)

    def source_shapes(self):
        p = self.proto.dummy_data_param
        n = self.n_tops
        if len(p.data_filler) not in (0, 1, n):
            raise LayerError(
                f"{len(p.data_filler)} data_filler values for {n} tops (Caffe: 0, 1 or one per top)"
            )

        def per_top(values, what):
            values = list(values)
            if len(values) == 1:
                return values * n
            if len(values) != n:
                raise LayerError(f"{len(values)} {what} values for {n} tops")
            return values

        if len(p.shape):
            if len(p.num) or len(p.channels) or len(p.height) or len(p.width):
                raise LayerError("give either shape or num/channels/height/width, not both")
            return [(tuple(s.dim), "") for s in per_top(p.shape, "shape")]
        if not len(p.num):
            raise LayerError("dummy_data_param needs shape or num/channels/height/width")
        dims = [per_top(getattr(p, f), f) for f in ("num", "channels", "height", "width")]
        return [(tuple(d), "") for d in zip(*dims)]


@register
class Parameter(Layer):
    """A learnable blob as a layer output (no bottoms)."""

    TYPES = ("Parameter",)
    BOTTOMS = (0, 0)

    def __init__(self, proto):
        super().__init__(proto)
        self.shape = tuple(proto.parameter_param.shape.dim)

    def infer(self, inputs):
        return [self.shape]

    def weight_shapes(self, inputs):
        return [self.shape]
