"""One test module per layer family of ``caffe2torch.layers`` (``test_<module>.py``): every
type converted and compared with OpenCV's dnn module or a numpy implementation of Caffe's
formula, each test declaring which with ``@pytest.mark.opencv`` / ``@pytest.mark.formula``."""
