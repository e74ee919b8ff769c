"""Run a Caffe net in real Caffe (pycaffe) and save every blob: the reference process.

    python3 _caffe_driver.py NET.prototxt WEIGHTS.caffemodel INPUTS.npz OUT.npz
    python3 _caffe_driver.py types      # {"version": ..., "types": [...]} on stdout

Runs under the Python pycaffe was built for (the system python3 and its numpy), never in
caffe2torch's environment, and imports nothing of caffe2torch. The inputs are the net's input
blobs by name; the output holds every blob of the net after one forward pass in TEST phase,
by name. A failure is one line on stderr and exit code 1 (Caffe's own log goes to stderr).
"""
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "2")  # Caffe's log: warnings and errors only
del sys.path[0]  # this file's folder: `import caffe` must find pycaffe, nothing beside it
# pycaffe's image helpers (caffe.io) are not used here: without scikit-image and SciPy, which
# the project's patch makes optional, `import caffe` takes a fifth of the time.
sys.modules.update({"skimage": None, "scipy": None})


def main(net_file, weights, inputs_file, out_file):
    import numpy as np

    import caffe

    caffe.set_mode_cpu()
    net = caffe.Net(net_file, weights, caffe.TEST)
    with np.load(inputs_file, allow_pickle=False) as given:
        for name in given.files:
            net.blobs[name].reshape(*given[name].shape)
            net.blobs[name].data[...] = given[name]
    net.reshape()
    net.forward()
    np.savez(out_file, **{name: np.array(blob.data) for name, blob in net.blobs.items()})


def types():
    import json

    import caffe

    print(json.dumps({"version": caffe.__version__, "types": sorted(caffe.layer_type_list())}))


if __name__ == "__main__":
    try:
        if sys.argv[1:] == ["types"]:
            types()
        else:
            main(*sys.argv[1:5])
    except Exception as e:  # noqa: BLE001 - one line for the caller
        print(f"{type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
        sys.exit(1)
