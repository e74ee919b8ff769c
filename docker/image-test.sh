#!/usr/bin/env bash
# `make image-test` (CI): build the real Dockerfile without a Docker engine and test the image.
#
#  1. podman, buildah and debootstrap (installed with apt-get when missing; needs root);
#  2. a Debian bookworm base made with debootstrap and imported as localhost/localbase:bookworm
#     (no CUDA there, so the build takes the CPU build of torch from docker/wheels);
#  3. `make image DOCKER=podman` with the host's CA bundle as the build secret: first the Caffe
#     stage alone (timed: real Caffe built from source), then the whole image;
#  4. inside the image, on a folder mounted at /workspace and owned by a non-root user:
#     weights made, LeNet converted twice (byte-identical), verified, the BatchNorm net converted
#     with --engine mmdnn; real Caffe (pycaffe) runs LeNet to what the converted folder computes,
#     and LeNet is verified and converted with --reference caffe; every converted folder has its
#     hub files (hubconf.py, README.md, config.json) and a report.html with the net drawn by
#     Graphviz's dot (its layers' names in the SVG) and matplotlib's plot, never a "needs ..."
#     line; `export-onnx` (when the image's caffe2torch has it) writes LeNet's model.onnx and its
#     onnxruntime check passes; every file written belongs to that user; bad calls exit 2 with
#     one line. What Caffe, Graphviz and the onnx and report extras add to the image is measured.
#
# Variables: IMAGE (caffe2torch:image-test), HOST_UID/HOST_GID (the owner of the mounted folder:
# the user who called sudo, else 4321), KEEP_BASE=1 keeps a base image already built.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${IMAGE:-caffe2torch:image-test}
base=localhost/localbase:bookworm
host_uid=${HOST_UID:-${SUDO_UID:-4321}}
host_gid=${HOST_GID:-${SUDO_GID:-$host_uid}}
ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}

say() { printf '\n== %s\n' "$*"; }
fail() {
    printf 'image-test FAILED: %s\n' "$*" >&2
    exit 1
}

[[ $(id -u) -eq 0 ]] || fail "run as root (podman and buildah build and run chroot containers here)"

test_start=$(date +%s)
say "tools"
if ! command -v podman >/dev/null || ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap >/dev/null
fi
podman --version
buildah --version

say "base image $base"
if [[ ${KEEP_BASE:-1} == 1 ]] && podman image exists "$base"; then
    echo "kept from an earlier run"
else
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$rootfs" >/dev/null
    tar -C "$rootfs" -c . | podman import - "$base" >/dev/null
    rm -rf "$rootfs"
fi

previous=$(podman image inspect --format '{{.Size}}' "$image" 2>/dev/null || echo 0)
build_flags="--isolation chroot --network host --format docker"
build() { # build IMAGE [BUILD FLAGS...]
    local tag=$1
    shift
    make --no-print-directory image DOCKER=podman IMAGE="$tag" TORCH_VARIANT=cpu BASE_IMAGE="$base" \
        CA_BUNDLE="$([[ -f $ca ]] && echo "$ca")" BUILD_FLAGS="$build_flags $*"
}

say "build the Caffe stage (real Caffe from its pinned source; cached unless its files changed)"
start=$(date +%s)
build "$image-caffe-stage" --target caffe
caffe_s=$(($(date +%s) - start))
podman untag "$image-caffe-stage" # its layers stay as the cache of the next build
echo "Caffe stage built in ${caffe_s} s"

say "build $image (podman, Debian bookworm base, CPU torch)"
start=$(date +%s)
build "$image"
build_s=$(($(date +%s) - start))
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "built in ${build_s} s; image size $((size / 1000000)) MB" \
    "(the $image before this build: $((previous / 1000000)) MB)"
podman image inspect --format '{{range $k, $v := .Labels}}{{$k}}={{$v}}{{"\n"}}{{end}}' "$image" \
    | grep -E '^(org.opencontainers.image.version|io.caffe2torch)'

ws=$(mktemp -d)
ctr=$(buildah from --quiet "$image")
cleanup() {
    buildah rm "$ctr" >/dev/null 2>&1 || true
    rm -rf "$ws" "$ws".*.json
}
trap cleanup EXIT

# Run the image's own ENTRYPOINT (buildah run does not apply it) with a mounted folder. Here tini
# is not PID 1 (no PID namespace), so it registers as a subreaper instead, in this container only.
mapfile -t entry < <(podman image inspect --format '{{range .Config.Entrypoint}}{{println .}}{{end}}' "$image" | grep .)
[[ ${entry[0]} == /usr/bin/tini ]] || fail "the ENTRYPOINT is not tini: ${entry[*]}"
buildah config --env TINI_SUBREAPER=1 "$ctr"
run_in() { # run_in [BUILDAH-RUN-FLAGS...] -- ARGS...
    local flags=()
    while [[ $1 != -- ]]; do
        flags+=("$1")
        shift
    done
    shift
    buildah run --isolation chroot "${flags[@]}" "$ctr" -- "${entry[@]}" "$@"
}
expect_exit() { # expect_exit CODE MESSAGE-PATTERN [BUILDAH-RUN-FLAGS...] -- ARGS...
    local want=$1 pattern=$2 rc=0 out
    shift 2
    out=$(run_in "$@" 2>&1) || rc=$?
    # buildah's own lines about the exit status are not the image's output
    out=$(grep -v -e '^subprocess exited with status' -e '^Error: exit status' <<<"$out" || true)
    [[ $rc -eq $want ]] || fail "exit $rc (wanted $want) from: ${*}; output: $out"
    [[ $(printf '%s\n' "$out" | grep -c .) -eq 1 ]] || fail "more than one line from: ${*}: $out"
    grep -q -- "$pattern" <<<"$out" || fail "no '$pattern' in: $out"
    echo "exit $rc: $out"
}

cp examples/lenet/lenet.prototxt examples/bn/bn.prototxt "$ws/"
mkdir "$ws/run1" "$ws/run2"
chown -R "$host_uid:$host_gid" "$ws"
chmod 755 "$ws" # like a home folder: others may enter, only its owner may write
mount=(-v "$ws:/workspace")

say "default command: --help"
help=$(run_in --)
grep -q "convert" <<<"$help" || fail "no help from the default command: $help"
echo "ok: $(grep -c . <<<"$help") lines of help"

say "as root (--user 0): the entry switches to the owner of /workspace (uid $host_uid)"
run_in --user 0 "${mount[@]}" -- synth-weights lenet.prototxt -o lenet.caffemodel --seed 0
# --record-paths: conversion.json says where the sources are (relative to the folder), so that
# verify finds them
run_in --user 0 "${mount[@]}" -- convert lenet.prototxt lenet.caffemodel -o run1/lenet --record-paths
run_in --user 0 "${mount[@]}" -- convert lenet.prototxt lenet.caffemodel -o run2/lenet --record-paths >/dev/null
run_in --user 0 "${mount[@]}" -- verify run1/lenet

real=../shared/corpus/cifar10_quick_weights_bxuan
if [[ -d $real ]]; then
    say "real trained weights from ../shared (CIFAR-10 quick), copied into the mounted folder"
    install -o "$host_uid" -g "$host_gid" -m 644 "$real/cifar10_quick.prototxt" \
        "$real/cifar10_quick_iter_4000.caffemodel" "$ws/"
    run_in --user 0 "${mount[@]}" -- convert cifar10_quick.prototxt cifar10_quick_iter_4000.caffemodel \
        -o run1/cifar10_quick --record-paths >/dev/null
    run_in --user 0 "${mount[@]}" -- verify run1/cifar10_quick | tail -n 1
fi

triplet=../shared/corpus/cnn3dobj_triplet
if [[ -d $triplet ]]; then
    say "predict on a real image (cnn3dobj_triplet, 4_78.png) against Caffe's own feature"
    install -o "$host_uid" -g "$host_gid" -m 644 "$triplet/3d_triplet_testIMG.prototxt" \
        "$triplet/3d_triplet_iter_30000.caffemodel" "$triplet/4_78.png" "$ws/"
    run_in --user 0 "${mount[@]}" -- convert 3d_triplet_testIMG.prototxt 3d_triplet_iter_30000.caffemodel \
        -o run1/triplet --mean 0 --scale 1 >/dev/null
    run_in --user 0 "${mount[@]}" -- predict run1/triplet 4_78.png --json >"$ws.predict.json"
    python3 - "$ws.predict.json" <<'PY' || fail "predict does not reproduce Caffe's feature"
import json, sys
got = json.load(open(sys.argv[1]))[0]["outputs"][0]["values"]
caffe = [-312.4805, 8.4768486, -224.98953]
worst = max(abs(g - c) / abs(c) for g, c in zip(got, caffe))
print(f"feat {got}; Caffe {caffe}; worst relative error {worst:.1e}")
assert worst <= 1e-3
PY
    rm -f "$ws.predict.json"
fi

say "as the host user (--user $host_uid:$host_gid): the MMdnn engine on the BatchNorm net"
run_in --user "$host_uid:$host_gid" "${mount[@]}" -- \
    convert bn.prototxt --random-weights --seed 0 --engine mmdnn -o run1/bn_mmdnn
run_in --user "$host_uid:$host_gid" "${mount[@]}" -- \
    convert bn.prototxt --random-weights --seed 0 --engine mmdnn -o run2/bn_mmdnn >/dev/null
python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["engine"]["name"] == "mmdnn"' \
    "$ws/run1/bn_mmdnn/conversion.json" || fail "bn_mmdnn was not made by MMdnn"

say "real Caffe, the reference engine: $(podman image inspect --format '{{index .Labels "io.caffe2torch.caffe"}}' "$image")"
# What Caffe adds: its prefix, and the layer that installs the packages it needs to run (read
# from the container's file system, mounted here).
rootfs=$(buildah mount "$ctr")
caffe_du=$(du -sb "$rootfs/opt/caffe-bvlc" | cut -f1)
caffe_pkgs=$(paste -s -d ' ' "$rootfs/opt/caffe-bvlc/runtime-packages")
buildah umount "$ctr" >/dev/null
[[ -n $caffe_pkgs ]] || fail "/opt/caffe-bvlc/runtime-packages is empty"
caffe_layer=$(podman history --format json "$image" | python3 -c '
import json, sys
print(sum(h["size"] for h in json.load(sys.stdin) if "/opt/caffe-bvlc/runtime-packages" in h["CreatedBy"]))')
echo "Caffe adds $(((caffe_du + caffe_layer) / 1000000)) MB of $((size / 1000000)) MB:" \
    "/opt/caffe-bvlc $((caffe_du / 1000000)) MB, its runtime packages $((caffe_layer / 1000000)) MB" \
    "($caffe_pkgs; python3-numpy, python3-protobuf, python3-six; their dependencies)"
# pycaffe, as the host user, on the mounted files: Caffe's prob against the converted folder's.
caffe_check='
import sys

import numpy as np
import torch

from caffe2torch.folder import load_converted
from caffe2torch.verify.caffe_ref import caffe_prefix, caffe_python, run_caffe

folder, net, weights = sys.argv[1:4]
x = np.random.default_rng(1).standard_normal((1, 1, 28, 28), dtype=np.float32)
with torch.no_grad():
    y = load_converted(folder)(torch.from_numpy(x)).numpy()
ref = run_caffe(net, weights, {"data": x})["prob"].reshape(y.shape)
err, bound = float(np.abs(y - ref).max()), 1e-5 + 1e-4 * float(np.abs(ref).max())
print(f"pycaffe in {caffe_prefix()} under {caffe_python()}: LeNet prob, max|{folder} - caffe| = "
      f"{err:.1e} (bound {bound:.1e}), argmax {int(ref.argmax())}")
assert err <= bound and int(y.argmax()) == int(ref.argmax()), (err, bound)
'
buildah run --isolation chroot --user "$host_uid:$host_gid" -e HOME=/tmp "${mount[@]}" "$ctr" -- \
    /opt/caffe2torch/bin/python -c "$caffe_check" run1/lenet lenet.prototxt lenet.caffemodel \
    || fail "real Caffe does not run LeNet to what the converted folder computes"
run_in --user 0 "${mount[@]}" -- verify run1/lenet --reference caffe --json >"$ws.verify.json" \
    || fail "verify --reference caffe failed on LeNet"
run_in --user 0 "${mount[@]}" -- convert lenet.prototxt lenet.caffemodel -o run1/lenet_caffe \
    --reference caffe | tail -n 1
run_in --user 0 "${mount[@]}" -- convert lenet.prototxt lenet.caffemodel -o run2/lenet_caffe \
    --reference caffe >/dev/null
python3 - "$ws.verify.json" "$ws/run1/lenet_caffe" <<'PY' || fail "--reference caffe did not check against Caffe"
import json, sys
from pathlib import Path

def caffe(where, reference):
    assert reference.startswith("Caffe ") and "OpenCV" not in reference, (where, reference)
    return reference

v = json.loads(Path(sys.argv[1]).read_text())
assert v["passed"] is True and v["failed"] == 0 and v["compared"] > 0, v
print(f"verify run1/lenet --reference caffe: passed, {v['compared']} values compared with "
      f"{caffe('verify --json', v['reference'])}")
folder = Path(sys.argv[2])
c = json.loads((folder / "conversion.json").read_text())["verification"]
assert c["passed"] is True and c["compared"] > 0, c
ref = caffe("conversion.json", c["reference"])
line = next(x for x in (folder / "report.md").read_text().splitlines() if x.startswith("Reference: "))
assert line.startswith(f"Reference: {ref}."), line
print(f"convert --reference caffe: conversion.json and report.md name {ref}; {c['compared']} values passed")
PY
rm -f "$ws.verify.json"

say "two runs give byte-identical files"
for f in lenet/model.py lenet/model.pth lenet/conversion.json lenet/report.md lenet/preprocess.json \
    lenet/preprocess.py lenet/report.html lenet/hubconf.py lenet/README.md lenet/config.json \
    bn_mmdnn/model.py bn_mmdnn/model.pth bn_mmdnn/conversion.json bn_mmdnn/report.md \
    bn_mmdnn/preprocess.json bn_mmdnn/report.html lenet_caffe/model.py lenet_caffe/model.pth \
    lenet_caffe/conversion.json lenet_caffe/report.md lenet_caffe/report.html; do
    cmp "$ws/run1/$f" "$ws/run2/$f" || fail "$f differs between two runs"
    echo "identical: $f $(sha256sum <"$ws/run1/$f" | cut -c1-16)"
done

say "report.html (Graphviz's dot, matplotlib) and the hub files of every converted folder"
# FOLDER:LAYER...: the layers whose names the drawing must show (as a box's text)
report_checks=("run1/lenet:conv1,ip2" "run1/lenet_caffe:conv1,ip2" "run1/bn_mmdnn:conv1,bn1" "run2/lenet:conv1")
if [[ -d $ws/run1/cifar10_quick ]]; then report_checks+=("run1/cifar10_quick:conv1,ip1"); fi
if [[ -d $ws/run1/triplet ]]; then report_checks+=("run1/triplet:conv1,conv2"); fi
python3 - "$ws" "${report_checks[@]}" <<'PY' || fail "a converted folder lacks its report.html drawing or hub files"
import json, re, sys
from pathlib import Path

ws = Path(sys.argv[1])
for arg in sys.argv[2:]:
    name, layers = arg.split(":")
    folder = ws / name
    missing = [f for f in ("hubconf.py", "README.md", "config.json", "report.md", "report.html")
               if not (folder / f).is_file()]
    assert not missing, f"{name}: no {', '.join(missing)}"
    json.loads((folder / "config.json").read_text())
    page = (folder / "report.html").read_text()
    needs = re.findall(r"[^<>]*needs (?:Graphviz|matplotlib)[^<>]*", page)
    assert not needs, f"{name}/report.html says: {needs[0].strip()}"
    net = re.search(r'<svg class="net".*?</svg>', page, re.S)
    assert net, f"{name}/report.html has no drawing of the net"
    drawn = set(re.findall(r">([^<>]+)</text>", net.group(0)))
    absent = [x for x in layers.split(",") if x not in drawn]
    assert not absent, f"{name}/report.html: the drawing lacks the layers {absent}"
    assert '<svg class="plot"' in page, f"{name}/report.html has no error plot"
    boxes = net.group(0).count('<g class="node')
    print(f"{name}: report.html {len(page) // 1000} kB, the net drawn ({boxes} boxes, "
          f"{', '.join(layers.split(','))} among them) and the error plot; hubconf.py, README.md, config.json")
PY

say "export-onnx"
rc=0
run_in --user 0 "${mount[@]}" -- export-onnx -h >/dev/null 2>&1 || rc=$?
if [[ $rc -ne 0 ]]; then
    echo "export-onnx SKIPPED: 'caffe2torch export-onnx -h' exits $rc in this image (no such command yet)"
else
    start=$(date +%s)
    run_in --user 0 "${mount[@]}" -- export-onnx run1/lenet --json >"$ws.onnx.json" \
        || fail "export-onnx run1/lenet failed: $(cat "$ws.onnx.json")"
    python3 - "$ws.onnx.json" "$ws/run1/lenet/model.onnx" "$(($(date +%s) - start))" <<'PY' \
        || fail "export-onnx did not write a checked model.onnx"
import json, sys
from pathlib import Path

r = json.loads(Path(sys.argv[1]).read_text())
onnx = Path(sys.argv[2])
assert r.get("passed") is True, r
assert onnx.is_file() and onnx.stat().st_size > 1000, onnx
errors = "; ".join(f"batch {b}: " + ", ".join(f"{k} {v:.1e}" for k, v in e.items())
                   for b, e in r.get("errors", {}).items())
print(f"export-onnx run1/lenet: model.onnx {onnx.stat().st_size // 1000} kB, opset {r.get('opset')}, "
      f"{'dynamic' if r.get('dynamic_batch') else 'static'} batch; onnxruntime vs torch, max relative "
      f"error: {errors} (tolerance {r.get('tolerance')}); {sys.argv[3]} s")
PY
    rm -f "$ws.onnx.json"
fi

say "what Graphviz and the onnx and report extras add"
graphviz_layer=$(podman history --format json "$image" | python3 -c '
import json, sys
print(sum(h["size"] for h in json.load(sys.stdin) if "install -y --no-install-recommends graphviz" in h["CreatedBy"]))')
extras_sizes=$(buildah run --isolation chroot "$ctr" -- /opt/caffe2torch/bin/python -c '
from importlib.metadata import distribution
names = ["onnx", "onnx-ir", "onnxruntime", "onnxscript", "ml-dtypes", "flatbuffers", "matplotlib",
         "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing", "python-dateutil", "tzdata"]
sizes = {n: sum(f.size or 0 for f in distribution(n).files or []) for n in names}
print(sum(sizes.values()), "; ".join(f"{n} {s / 1e6:.1f}" for n, s in sorted(sizes.items(), key=lambda x: -x[1])))
')
[[ $graphviz_layer -gt 0 && ${extras_sizes%% *} -gt 0 ]] || fail "could not measure graphviz and the extras"
echo "Graphviz (dot and its libraries, one layer) adds $((graphviz_layer / 1000000)) MB;" \
    "the onnx and report extras in /opt/caffe2torch $((${extras_sizes%% *} / 1000000)) MB" \
    "(MB: ${extras_sizes#* })"

say "bad calls: exit 2, one line, nothing written"
before=$(find "$ws" | sort | sha256sum)
if [[ $host_uid != 1000 ]]; then # the image's own user, on a folder it may not write
    expect_exit 2 "not writable" "${mount[@]}" -- convert lenet.prototxt lenet.caffemodel -o run3
fi
expect_exit 2 "not mounted" -- convert lenet.prototxt -o out
expect_exit 2 "missing.prototxt: no such file" --user 0 "${mount[@]}" -- convert missing.prototxt -o run3
[[ $(find "$ws" | sort | sha256sum) == "$before" ]] || fail "a failed call wrote into /workspace"

say "owners"
find "$ws" -mindepth 1 -printf '%u:%g %p\n' | sed "s|$ws|/workspace|" | head -n 40
wrong=$(find "$ws" -mindepth 1 \( ! -uid "$host_uid" -o ! -gid "$host_gid" \) -printf '%p\n')
[[ -z $wrong ]] || fail "files not owned by $host_uid:$host_gid: $wrong"
echo "every file belongs to $host_uid:$host_gid"

say "image-test passed: built in ${build_s} s (the Caffe stage ${caffe_s} s), $((size / 1000000)) MB" \
    "(Caffe $(((caffe_du + caffe_layer) / 1000000)) MB of it, Graphviz $((graphviz_layer / 1000000)) MB," \
    "the onnx and report extras $((${extras_sizes%% *} / 1000000)) MB; the $image before this build:" \
    "$((previous / 1000000)) MB); in $(($(date +%s) - test_start)) s in all"
