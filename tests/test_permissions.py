"""What caffe2torch writes gets the modes a new file or folder normally gets (0666 and 0777
less the umask, not the 0600 and 0700 of the temporary files it writes first), and is on disk
before it is put in place: each file is fsynced before the rename, its folder after it."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from caffe2torch import folder

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "examples" / "lenet" / "lenet.prototxt"


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=["umask022", "umask077", "umask002"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def tree_modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): mode(p) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_convert_writes_files_and_folder_with_the_umasks_modes(cli, tmp_path, umask, fmt):
    out = tmp_path / "lenet"
    code, _, stderr = cli("convert", "--record-paths", LENET, "--random-weights", "--no-verify", "-o", out, "--format", fmt)
    assert code == 0, stderr
    assert mode(out) == 0o777 & ~umask
    modes = tree_modes(out)
    assert {"model.py", "conversion.json", "report.md", f"model.{fmt}"} <= set(modes)
    assert modes == {name: 0o666 & ~umask for name in modes}
    # replaced with --overwrite: the new folder's modes again
    code, _, stderr = cli("convert", "--record-paths", LENET, "--random-weights", "--no-verify", "-o", out, "--overwrite")
    assert code == 0, stderr
    assert mode(out) == 0o777 & ~umask
    assert set(tree_modes(out).values()) == {0o666 & ~umask}


def test_synth_weights_file_has_the_umasks_mode(cli, tmp_path, umask):
    out = tmp_path / "lenet.caffemodel"
    code, _, stderr = cli("synth-weights", LENET, "-o", out)
    assert code == 0, stderr
    assert mode(out) == 0o666 & ~umask
    out.chmod(0o600)  # --overwrite writes a new file, with the mode a new file gets
    assert cli("synth-weights", LENET, "-o", out, "--overwrite")[0] == 0
    assert mode(out) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["lenet.caffemodel"]  # no temporary left


def test_a_file_written_with_mkstemp_into_the_folder_gets_the_normal_mode(tmp_path, umask):
    import tempfile

    def fill(tmp: Path) -> None:
        fd, name = tempfile.mkstemp(dir=tmp)  # 0600
        os.close(fd)
        os.rename(name, tmp / "conversion.json")
        (tmp / "mmdnn").mkdir(mode=0o700)
        (tmp / "mmdnn" / "kit.py").write_text("")

    out = folder.Destination.folder(tmp_path / "out", inputs=[], overwrite=False).write_folder(fill)
    assert tree_modes(out) == {
        "conversion.json": 0o666 & ~umask, "mmdnn": 0o777 & ~umask, "mmdnn/kit.py": 0o666 & ~umask,
    }


# ------------------------------------------------------------------------------ fsync
@pytest.fixture
def events(monkeypatch):
    """os.fsync (by the path of its descriptor), os.rename and os.replace, in order."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to name a descriptor's file")
    log: list[tuple[str, ...]] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd):
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rename(src, dst, *a, **k):
        log.append(("rename", os.path.abspath(src), os.path.abspath(dst)))
        return real_rename(src, dst, *a, **k)

    def replace(src, dst, *a, **k):
        log.append(("rename", os.path.abspath(src), os.path.abspath(dst)))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    return log


def test_convert_fsyncs_every_file_and_folder_before_the_rename_and_the_parent_after(cli, tmp_path, events):
    out = tmp_path / "lenet"
    code, _, stderr = cli("convert", "--record-paths", LENET, "--random-weights", "--no-verify", "-o", out)
    assert code == 0, stderr
    [(at, tmp)] = [(i, e[1]) for i, e in enumerate(events) if e[0] == "rename" and e[2] == str(out)]
    before = {e[1] for e in events[:at] if e[0] == "fsync"}
    after = [e[1] for e in events[at + 1:] if e[0] == "fsync"]
    written = sorted(p.name for p in out.iterdir())
    assert {os.path.join(tmp, name) for name in written} | {tmp} <= before
    assert str(tmp_path) in after  # the rename itself


def test_synth_weights_fsyncs_the_file_before_the_rename_and_the_folder_after(cli, tmp_path, events):
    out = tmp_path / "lenet.caffemodel"
    code, _, stderr = cli("synth-weights", LENET, "-o", out)
    assert code == 0, stderr
    [(at, tmp)] = [(i, e[1]) for i, e in enumerate(events) if e[0] == "rename" and e[2] == str(out)]
    assert ("fsync", tmp) in events[:at]
    assert ("fsync", str(tmp_path)) in events[at + 1:]


def test_a_failing_fsync_is_one_line_and_leaves_nothing(cli, tmp_path, monkeypatch):
    def fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "lenet"
    code, _, stderr = cli("convert", "--record-paths", LENET, "--random-weights", "--no-verify", "-o", out)
    assert (code, stderr.strip()) == (2, f"error: {out}: cannot write: Input/output error")
    code, _, stderr = cli("synth-weights", LENET, "-o", tmp_path / "w.caffemodel")
    assert (code, stderr.strip()) == (2, f"error: {tmp_path / 'w.caffemodel'}: cannot write: Input/output error")
    assert list(tmp_path.iterdir()) == []
