#!/usr/bin/env bash
# The image's entry (under tini): `docker run ... IMAGE COMMAND ARGS` runs `caffe2torch COMMAND
# ARGS` in /workspace, the host folder mounted with -v "$PWD:/workspace", so relative paths are
# the host's. Files it writes there belong to the host user:
#   - as any non-root user (the image's 1000, or `--user "$(id -u):$(id -g)"`) it runs as that user;
#   - as root (`--user 0`, or rootless podman, where root is the host user) it switches to the
#     owner of /workspace first, unless that owner is root itself.
# It exits 2 with one line when /workspace is not mounted, not writable, or an input is missing.
set -euo pipefail

workspace=${CAFFE2TORCH_WORKSPACE:-/workspace}

die() {
    printf 'caffe2torch: error: %s\n' "$*" >&2
    exit 2
}

[[ $# -gt 0 ]] || set -- --help

# Help and version need no files.
needs_files=true
for arg in "$@"; do
    case $arg in
        -h | --help | --version | --show-completion | --install-completion) needs_files=false ;;
    esac
done

if [[ $needs_files == true ]]; then
    mountpoint -q "$workspace" \
        || die "$workspace is not mounted: run with -v \"\$PWD:$workspace\" and give paths relative to that folder"

    owner=$(stat -c %u "$workspace")
    group=$(stat -c %g "$workspace")
    if [[ $(id -u) -eq 0 && $owner -ne 0 ]]; then
        exec setpriv --reuid="$owner" --regid="$group" --clear-groups -- "$0" "$@"
    fi

    case $1 in
        convert | convert-all | synth-weights)
            [[ -w $workspace ]] \
                || die "$workspace (owned by uid $owner) is not writable by uid $(id -u): run with --user \"\$(id -u):\$(id -g)\""
            ;;
    esac

    # Inputs named on the command line (Caffe files, arrays, images, labels) must be in the
    # mounted folder.
    cd "$workspace"
    previous=
    for arg in "$@"; do
        case $previous in
            -o | --output) previous=$arg; continue ;;
        esac
        previous=$arg
        path=${arg#*=}
        case $arg in
            -*) ;;
            *.prototxt | *.caffemodel | *.h5 | *.binaryproto | *.npy | *.txt | \
                *.png | *.jpg | *.jpeg | *.bmp | *.ppm | *.pgm | *.tif | *.tiff | *.webp)
                [[ -e $path ]] \
                    || die "$path: no such file in $workspace (the mounted folder); paths are relative to it, host paths outside it are not visible"
                ;;
        esac
    done
fi

# A user picked with --user may have no home directory in the image.
if [[ ! -w ${HOME:-/nonexistent} ]]; then
    export HOME=/tmp
fi

exec caffe2torch "$@"
