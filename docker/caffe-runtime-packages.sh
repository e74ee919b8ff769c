#!/usr/bin/env bash
# The Debian packages a Caffe build needs at run time, computed from the build itself:
#
#   docker/caffe-runtime-packages.sh PREFIX > PREFIX/runtime-packages
#
# Every ELF file under PREFIX (pycaffe's _caffe.so, libcaffe.so.*) names its shared libraries
# (readelf's NEEDED); ldd says which file each one is here, dpkg -S which package holds that file.
# One package a line, sorted, without the architecture. The libraries those libraries need come
# with the packages' own dependencies. Libraries inside PREFIX are skipped; one that is not found,
# or that no package holds, stops it (exit 1) with the library named.
set -euo pipefail

prefix=$(realpath "${1:?usage: caffe-runtime-packages.sh PREFIX}")

die() {
    echo "caffe-runtime-packages.sh: $*" >&2
    exit 1
}

# the package holding a file; dpkg knows a file by the path its package ships, which on a
# merged-/usr system may be the /lib one while realpath gives the /usr/lib one, or the other way
owner() {
    local path=$1 try line
    for try in "$path" "${path#/usr}" "/usr$path"; do
        if line=$(dpkg -S "$try" 2>/dev/null | grep -m 1 -F ": $try"); then
            line=${line%%: *}
            line=${line%%,*}
            echo "${line%%:*}"
            return 0
        fi
    done
    return 1
}

declare -A packages=()
elves=0
while IFS= read -r -d '' file; do
    [[ $(head -c 4 "$file" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] || continue # ELF
    elves=$((elves + 1))
    mapfile -t needed < <(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
    resolved=$(ldd "$file" 2>&1) || die "${file#"$prefix"/}: ldd: $resolved"
    for lib in "${needed[@]}"; do
        path=$(awk -v lib="$lib" '$1 == lib && $2 == "=>" { print $3; exit }' <<<"$resolved")
        [[ -n $path && $path != not ]] || die "${file#"$prefix"/}: $lib not found"
        real=$(realpath "$path")
        [[ $real == "$prefix"/* ]] && continue
        pkg=$(owner "$real") || die "${file#"$prefix"/}: $lib ($real) belongs to no package"
        packages[$pkg]=1
    done
done < <(find "$prefix" -type f -print0)

[[ $elves -gt 0 ]] || die "no ELF file in $prefix"
printf '%s\n' "${!packages[@]}" | LC_ALL=C sort
