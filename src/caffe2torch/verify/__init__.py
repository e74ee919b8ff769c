"""Checking a conversion against an independent Caffe implementation (OpenCV's dnn module)."""
