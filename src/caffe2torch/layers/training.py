"""Layers that only make sense while training: losses, accuracy, and writers of outputs.

A deploy graph drops them (with a note), and with them the labels they consumed.
"""
from __future__ import annotations

from . import register
from .base import Layer


@register
class TrainingOnly(Layer):
    TYPES = (
        "Accuracy", "SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss",
        "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss", "MultiBoxLoss",
        "SmoothL1Loss", "DetectionEvaluate", "HDF5Output",
    )
    TRAINING_ONLY = True
    BOTTOMS = (1, None)
    TOPS = (0, None)

    def infer(self, inputs):  # never called: the graph drops these layers
        return [()] * self.n_tops
