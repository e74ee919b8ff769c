"""caffe2torch: convert Caffe models (prototxt + caffemodel) to clean, verified PyTorch."""

__version__ = "0.1.0"
