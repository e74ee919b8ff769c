#!/usr/bin/env bash
# `make image-test` (CI): build the real Dockerfile without a Docker engine and test the image.
#
#  1. podman, buildah and debootstrap (installed with apt-get when missing; needs root);
#  2. a Debian bookworm base made with debootstrap and imported as localhost/localbase:bookworm
#     (no CUDA there, so the build takes the CPU build of torch from docker/wheels);
#  3. `make image DOCKER=podman` with the host's CA bundle as the build secret;
#  4. inside the image, on a folder mounted at /workspace and owned by a non-root user:
#     weights made, LeNet converted twice (byte-identical), verified, the BatchNorm net converted
#     with --engine mmdnn; every file written belongs to that user; bad calls exit 2 with one line.
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

say "build $image (podman, Debian bookworm base, CPU torch)"
start=$(date +%s)
build_flags="--isolation chroot --network host --format docker"
make --no-print-directory image DOCKER=podman IMAGE="$image" TORCH_VARIANT=cpu BASE_IMAGE="$base" \
    CA_BUNDLE="$([[ -f $ca ]] && echo "$ca")" BUILD_FLAGS="$build_flags"
build_s=$(($(date +%s) - start))
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "built in ${build_s} s; image size $((size / 1000000)) MB"
podman image inspect --format '{{range $k, $v := .Labels}}{{$k}}={{$v}}{{"\n"}}{{end}}' "$image" \
    | grep -E '^(org.opencontainers.image.version|io.caffe2torch)'

ws=$(mktemp -d)
ctr=$(buildah from --quiet "$image")
cleanup() {
    buildah rm "$ctr" >/dev/null 2>&1 || true
    rm -rf "$ws"
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
run_in --user 0 "${mount[@]}" -- convert lenet.prototxt lenet.caffemodel -o run1/lenet
run_in --user 0 "${mount[@]}" -- convert lenet.prototxt lenet.caffemodel -o run2/lenet >/dev/null
run_in --user 0 "${mount[@]}" -- verify run1/lenet

real=../shared/corpus/cifar10_quick_weights_bxuan
if [[ -d $real ]]; then
    say "real trained weights from ../shared (CIFAR-10 quick), copied into the mounted folder"
    install -o "$host_uid" -g "$host_gid" -m 644 "$real/cifar10_quick.prototxt" \
        "$real/cifar10_quick_iter_4000.caffemodel" "$ws/"
    run_in --user 0 "${mount[@]}" -- convert cifar10_quick.prototxt cifar10_quick_iter_4000.caffemodel \
        -o run1/cifar10_quick >/dev/null
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

say "two runs give byte-identical files"
for f in lenet/model.py lenet/model.pth lenet/conversion.json lenet/report.md lenet/preprocess.json \
    lenet/preprocess.py bn_mmdnn/model.py bn_mmdnn/model.pth bn_mmdnn/conversion.json \
    bn_mmdnn/report.md bn_mmdnn/preprocess.json; do
    cmp "$ws/run1/$f" "$ws/run2/$f" || fail "$f differs between two runs"
    echo "identical: $f $(sha256sum <"$ws/run1/$f" | cut -c1-16)"
done

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

say "image-test passed: built in ${build_s} s, $((size / 1000000)) MB"
