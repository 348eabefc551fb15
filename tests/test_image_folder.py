"""hc.datasets.image_folder on real image files written here: formats, modes and sizes, bad
files, the cache (reuse, invalidation, atomic writes), parallel decoding, the split."""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

import heterocnn as hc  # noqa: E402
from heterocnn import image_folder as imf  # noqa: E402
from conftest import write_image_folder  # noqa: E402


@pytest.fixture
def folder(tmp_path, sample, cache_home):
    root = tmp_path / "images"
    return root, write_image_folder(root, sample[0], per_class=12, seed=len(str(tmp_path)))


def _decodes(monkeypatch):
    """A list that grows by one each time image_folder decodes files."""
    calls = []
    real = imf._decode_all

    def counting(*args, **kw):
        calls.append(len(args[1]))
        return real(*args, **kw)

    monkeypatch.setattr(imf, "_decode_all", counting)
    return calls


def test_classes_labels_and_pixels(folder):
    root, made = folder
    data = hc.datasets.image_folder(root, progress=False)
    assert data.classes == tuple(sorted(os.listdir(root)))  # sorted, as torchvision's
    assert data.images.shape == (len(made), 1, 28, 28) and data.images.dtype == np.uint8
    assert data.files == tuple(sorted(made))
    for rel, label, img in zip(data.files, data.labels, data.images):
        assert label == made[rel][0]
        lossless = rel.endswith((".png", ".gif", ".bmp", ".webp"))
        if lossless and Image.open(root / rel).size == (28, 28):
            assert np.array_equal(img[0], made[rel][1]), rel  # lossless 28x28: exact pixels
        else:  # odd sizes and JPEG: resized / lossy, still the same picture
            assert np.corrcoef(img[0].ravel(), made[rel][1].ravel().astype(float))[0, 1] > 0.8, rel
    assert data.preprocessing == {"size": [28, 28], "channels": 1, "resize": "stretch"}


def test_each_image_is_what_load_image_gives(folder):
    root, _ = folder
    for channels, size, resize in ((3, (17, 23), "stretch"), (1, (9, 30), "crop")):
        data = hc.datasets.image_folder(root, size=size, channels=channels, resize=resize,
                                        progress=False)
        assert data.images.shape[1:] == (channels,) + size
        for rel, img in zip(data.files, data.images):
            assert np.array_equal(img, hc.load_image(root / rel, size, channels, resize)), rel


def test_modes_grey_of_rgb_alpha_palette_16_bit(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (13, 19, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.array_equal(hc.load_image(tmp_path / "rgb.png", (13, 19), 1)[0], grey)
    assert np.array_equal(hc.load_image(tmp_path / "rgb.png", (13, 19), 3), rgb.transpose(2, 0, 1))
    rgba = np.dstack([rgb, rng.integers(0, 256, (13, 19), dtype=np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")  # alpha dropped
    assert np.array_equal(hc.load_image(tmp_path / "rgba.png", (13, 19), 3), rgb.transpose(2, 0, 1))
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.gif")
    p = hc.load_image(tmp_path / "p.gif", (13, 19), 3)
    assert p.shape == (3, 13, 19) and np.abs(p.astype(int) - rgb.transpose(2, 0, 1)).mean() < 40
    Image.fromarray(rgb).save(tmp_path / "jpeg.png", format="JPEG")  # a JPEG named .png
    assert np.array_equal(hc.load_image(tmp_path / "jpeg.png", (13, 19), 3),
                          np.asarray(Image.open(tmp_path / "jpeg.png")).transpose(2, 0, 1))
    deep = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "16.png")
    assert Image.open(tmp_path / "16.png").mode.startswith("I;16")
    assert np.array_equal(hc.load_image(tmp_path / "16.png", (6, 5), 1)[0], deep >> 8)


def test_crop_keeps_the_centre_and_stretch_the_whole(tmp_path):
    wide = np.zeros((10, 30), np.uint8)
    wide[:, 10:20] = 255  # white centre, black sides
    Image.fromarray(wide).save(tmp_path / "wide.png")
    crop = hc.load_image(tmp_path / "wide.png", (10, 10), 1, "crop")[0]
    stretch = hc.load_image(tmp_path / "wide.png", (10, 10), 1, "stretch")[0]
    assert crop.min() == 255
    assert stretch[:, 0].max() == 0 and stretch[:, 5].min() == 255


def test_bad_files_are_skipped_with_one_warning(folder):
    root, made = folder
    cls = sorted(os.listdir(root))[1]
    good = (root / sorted(made)[0]).read_bytes()
    (root / cls / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / cls / "text.png").write_text("not an image\n")
    (root / cls / "empty.jpg").write_bytes(b"")
    (root / cls / "notes.txt").write_text("ignored: not an image extension\n")
    (root / cls / ".hidden.png").write_text("ignored: hidden\n")
    with pytest.warns(UserWarning) as caught:
        data = hc.datasets.image_folder(root, progress=False)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message and "skipped 3 file(s)" in message
    assert f"{cls}/empty.jpg" in message and f"{cls}/text.png" in message
    assert len(data) == len(made) and not any("truncated" in f for f in data.files)
    with pytest.raises(hc.DataFormatError, match=r"empty\.jpg"):
        hc.datasets.image_folder(root, progress=False, on_error="raise", cache=False)


def test_truncated_file_alone_is_an_error_naming_it(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (40, 40), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[:-30])
    with pytest.raises(hc.DataFormatError, match=r"t\.png: not a readable image"):
        hc.load_image(tmp_path / "t.png")


def test_folder_errors(tmp_path, cache_home):
    with pytest.raises(FileNotFoundError):
        hc.datasets.image_folder(tmp_path / "missing")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "loose.png").write_bytes(b"")
    with pytest.raises(hc.DataFormatError, match="no class folders"):
        hc.datasets.image_folder(tmp_path / "root")
    (tmp_path / "root" / "a").mkdir()
    (tmp_path / "root" / "b").mkdir()
    Image.new("L", (5, 5)).save(tmp_path / "root" / "a" / "1.png")
    (tmp_path / "root" / "b" / "readme.txt").write_text("x")
    with pytest.raises(hc.DataFormatError, match=r"without image files.*b/ \(1 other files\)"):
        hc.datasets.image_folder(tmp_path / "root")
    (tmp_path / "root" / "b" / "2.png").write_text("not an image")
    with pytest.warns(UserWarning, match="skipped 1"), pytest.raises(
            hc.DataFormatError, match="no readable image left in class folder.* b"):
        hc.datasets.image_folder(tmp_path / "root")
    with pytest.raises(hc.InvalidValueError, match="channels"):
        hc.datasets.image_folder(tmp_path / "root", channels=2)
    with pytest.raises(hc.InvalidValueError, match="resize"):
        hc.datasets.image_folder(tmp_path / "root", resize="pad")


def test_cache_is_reused_and_invalidated(folder, monkeypatch, cache_home):
    root, made = folder
    decodes = _decodes(monkeypatch)
    first = hc.datasets.image_folder(root, progress=False)
    assert decodes == [len(made)] and len(os.listdir(cache_home)) == 1
    again = hc.datasets.image_folder(root, progress=False)
    assert decodes == [len(made)]  # read from the cache
    assert np.array_equal(again.images, first.images) and again.files == first.files
    assert np.array_equal(again.labels, first.labels) and again.classes == first.classes

    rel = next(r for r in sorted(made) if r.endswith(".png") and "000" in r)
    new = np.random.default_rng(5).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(new).save(root / rel)  # other content and size
    changed = hc.datasets.image_folder(root, progress=False)
    assert len(decodes) == 2
    assert np.array_equal(changed.images[changed.files.index(rel), 0], new)
    st = os.stat(root / rel)
    os.utime(root / rel, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched only
    hc.datasets.image_folder(root, progress=False)
    assert len(decodes) == 3
    os.remove(root / rel)  # a file removed
    assert len(hc.datasets.image_folder(root, progress=False)) == len(made) - 1
    assert len(decodes) == 4
    hc.datasets.image_folder(root, size=(14, 14), progress=False)  # other options: own file
    assert len(decodes) == 5 and len(os.listdir(cache_home)) == 2  # replaced, not piled up
    assert not [n for n in os.listdir(cache_home) if n.startswith(".")]  # no temporary file
    stale, fresh = cache_home / ".killed.npz.x1.tmp", cache_home / ".writing.npz.x2.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (1, 1))  # left by a writer killed long ago: removed at the next write
    hc.datasets.image_folder(root, size=(14, 15), progress=False)
    assert not stale.exists() and fresh.exists()
    fresh.unlink()
    decodes.pop()
    for name in os.listdir(cache_home):
        (cache_home / name).write_bytes(b"PK\x03\x04 broken")
    assert len(hc.datasets.image_folder(root, progress=False)) == len(made) - 1
    assert len(decodes) == 6  # an unreadable cache is decoded again
    hc.datasets.image_folder(root, progress=False, cache=False)
    assert len(decodes) == 7


def test_a_failed_cache_write_leaves_no_file(folder, monkeypatch, cache_home):
    root, made = folder

    def dies(f, **arrays):
        f.write(b"half a cache")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imf.np, "savez", dies)
    with pytest.warns(UserWarning, match="could not write the cache"):
        data = hc.datasets.image_folder(root, progress=False)
    assert len(data) == len(made)
    assert os.listdir(cache_home) == []


def test_parallel_decoding_equals_serial(folder, monkeypatch):
    root, made = folder
    cls = sorted(os.listdir(root))[0]
    (root / cls / "zz-bad.png").write_text("not an image")
    monkeypatch.setattr(imf, "SERIAL_BELOW", 0)
    monkeypatch.setattr(imf, "_CHUNK", 5)
    with pytest.warns(UserWarning, match="zz-bad"):
        par = hc.datasets.image_folder(root, workers=2, cache=False, progress=False)
    with pytest.warns(UserWarning, match="zz-bad"):
        ser = hc.datasets.image_folder(root, workers=1, cache=False, progress=False)
    assert np.array_equal(par.images, ser.images) and par.files == ser.files
    assert np.array_equal(par.labels, ser.labels)


def test_stratified_seeded_split(folder):
    root, made = folder
    data = hc.datasets.image_folder(root, progress=False)
    train, val = hc.datasets.image_folder(root, progress=False, val_split=0.25, seed=3)
    assert len(train) + len(val) == len(data)
    assert not set(train.files) & set(val.files)
    assert np.array_equal(np.bincount(val.labels), [3, 3, 3])  # 25% of 12 per class
    assert train.classes == val.classes == data.classes
    assert train.preprocessing == data.preprocessing
    again = data.split(0.25, seed=3)[1]
    other = data.split(0.25, seed=4)[1]
    assert again.files == val.files and other.files != val.files
    for f, img in zip(val.files, val.images):
        assert np.array_equal(img, data.images[data.files.index(f)])
    with pytest.raises(hc.InvalidValueError, match="fraction"):
        data.split(1.0)


def test_import_loads_no_optional_dependency():
    code = ("import sys, heterocnn; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'PIL', 'matplotlib', 'sklearn', 'safetensors'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_without_pillow_the_error_names_the_extra(folder, monkeypatch):
    root, _ = folder
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(hc.MissingExtraError, match=r"heterocnn\[images\]"):
        hc.datasets.image_folder(root, cache=False)
    with pytest.raises(ImportError, match=r"heterocnn\[images\]"):
        hc.load_image(root / sorted(os.listdir(root))[0] / "000.png")
