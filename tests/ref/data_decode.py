# Reference for data/decode.c: what PIL (the decoder the PyTorch world uses) makes of PNG and JPEG files.
# Two kinds of case, both compared exactly by tests/test_data_readers.c:
#  synth/<name>: a small image made here, its file bytes (`bytes`) and PIL's RGB decode (`rgb`, H x W x 3),
#    plus for label PNGs the raw values (`idx`, H x W); every colour type: gray (1, 4, 8 bit), gray+alpha,
#    RGB, RGBA, palette (with transparency, 4 and 8 bit), 16-bit RGB and gray, interlaced RGB; JPEG gray, RGB 4:2:0 and
#    4:4:4, progressive, Adobe CMYK.
#  real/<name>: a file of ../shared/data (attribute `path`, relative to it). The datasets' licences do not
#    allow copying them into the repository, so only a digest of PIL's decode is kept: FNV-1a 64 of the
#    HWC bytes (`fnv`), per-row and per-column channel sums (`row_sums` H x 3, `col_sums` W x 3), `shape`.
# Integer data is stored as int32 (ib_h5 reads int32), gzip-compressed.
# Run: /usr/bin/python3 tests/ref/data_decode.py (needs python3-pil, python3-h5py, and the shared data).
import io
import os
import struct
import zlib

import numpy as np
from PIL import Image, features

from common import open_ref, close_ref

SHARED = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/data"))


def pattern(h, w, c, seed):
    """Smooth gradients plus noise: exercises both the DCT and the edges of odd sizes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    chans = []
    for k in range(c):
        base = (x * (37 + 11 * k) + y * (23 + 7 * k)) % 256
        chans.append(np.clip(base + rng.integers(-20, 21, size=(h, w)), 0, 255))
    return np.stack(chans, -1).astype(np.uint8)


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png16(a):
    """A 16-bit PNG (PIL cannot write 16-bit RGB): a is uint16 H x W (gray) or H x W x 3 (RGB)."""
    h, w = a.shape[:2]
    ct = 2 if a.ndim == 3 else 0
    raw = b"".join(b"\x00" + a[r].astype(">u2").tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, ct, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")


def png_adam7(a):
    """An interlaced (Adam7) 8-bit RGB PNG, written by hand: PIL cannot write interlaced files."""
    h, w = a.shape[:2]
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = a[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        raw += b"".join(b"\x00" + sub[r].tobytes() for r in range(sub.shape[0]))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")


def save(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def i32(a):
    return np.asarray(a, dtype=np.int32)


def put_synth(f, name, data, rgb, idx=None):
    g = f.create_group("synth/" + name)
    g.create_dataset("bytes", data=i32(np.frombuffer(data, dtype=np.uint8)), compression="gzip")
    g.create_dataset("rgb", data=i32(rgb), compression="gzip")
    if idx is not None:
        g.create_dataset("idx", data=i32(idx), compression="gzip")


def pil_rgb(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def synth_cases(f):
    h, w = 23, 37
    rgb = pattern(h, w, 3, 1)
    gray = pattern(h, w, 1, 2)[..., 0]
    alpha = pattern(h, w, 1, 3)[..., 0]

    for name, im in [("png_rgb", Image.fromarray(rgb)),
                     ("png_rgba", Image.fromarray(np.dstack([rgb, alpha]), "RGBA")),
                     ("png_gray", Image.fromarray(gray)),
                     ("png_gray_alpha", Image.fromarray(np.dstack([gray, alpha]), "LA"))]:
        data = save(im, "PNG")
        put_synth(f, name, data, pil_rgb(data))

    # Palette, 8 bit with a transparent entry and 4 bit: label masks keep the indices.
    idx8 = (pattern(h, w, 1, 4)[..., 0] % 40).astype(np.uint8)
    p = Image.fromarray(idx8, "P")
    pal = pattern(1, 256, 3, 5).reshape(-1).tolist()
    p.putpalette(pal)
    data = save(p, "PNG", transparency=3)
    put_synth(f, "png_palette", data, pil_rgb(data), idx8)
    idx4 = (idx8 % 12).astype(np.uint8)
    p4 = Image.fromarray(idx4, "P")
    p4.putpalette(pal[:48])
    data = save(p4, "PNG", bits=4)
    assert data[24] == 4, "PIL did not write a 4-bit palette"
    put_synth(f, "png_palette4", data, pil_rgb(data), idx4)

    # 1-bit and 8-bit gray as masks: the raw values (0/1 for 1-bit), the RGB decode scales 1-bit to 0/255.
    bits = (gray > 128).astype(np.uint8)
    data = save(Image.fromarray(bits * 255).convert("1"), "PNG")
    put_synth(f, "png_gray1", data, pil_rgb(data), bits)
    data = save(Image.fromarray(gray), "PNG")
    put_synth(f, "png_gray_mask", data, pil_rgb(data), gray)

    # 16 bit: the high byte. (PIL clips 16-bit gray to 255 instead, so the expectation is computed here.)
    r16 = (rgb.astype(np.uint16) << 8) | pattern(h, w, 3, 6).astype(np.uint16)
    data = png16(r16)
    assert np.array_equal(pil_rgb(data), rgb)
    put_synth(f, "png_rgb16", data, rgb)
    g16 = (gray.astype(np.uint16) << 8) | pattern(h, w, 1, 7)[..., 0].astype(np.uint16)
    put_synth(f, "png_gray16", png16(g16), np.repeat(gray[..., None], 3, -1))

    data = png_adam7(rgb)
    assert np.array_equal(pil_rgb(data), rgb)
    put_synth(f, "png_interlaced", data, rgb)

    # JPEG: PIL decodes through the same libjpeg-turbo as ours, so equality is exact.
    big = pattern(45, 61, 3, 8)
    for name, im, kw in [("jpg_rgb420", Image.fromarray(big), dict(quality=90)),
                         ("jpg_rgb444", Image.fromarray(big), dict(quality=95, subsampling=0)),
                         ("jpg_progressive", Image.fromarray(big), dict(quality=85, progressive=True)),
                         ("jpg_gray", Image.fromarray(big[..., 0]), dict(quality=90)),
                         ("jpg_cmyk", Image.fromarray(np.dstack([big, big[..., :1] // 2]), "CMYK"), dict(quality=92))]:
        data = save(im, "JPEG", **kw)
        put_synth(f, name, data, pil_rgb(data))
    assert b"Adobe" in f["synth/jpg_cmyk/bytes"][()].astype(np.uint8).tobytes(), "CMYK JPEG without an Adobe marker"


def fnv1a64(b):
    hsh = 0xCBF29CE484222325
    for byte in b:
        hsh ^= byte
        hsh = (hsh * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return hsh


def put_real(f, name, rel, mask=False):
    im = Image.open(os.path.join(SHARED, rel))
    mode = im.mode
    a = np.asarray(im) if mask else np.asarray(im.convert("RGB"))
    if mask:
        assert mode in ("L", "P"), (rel, mode)
        a = a[..., None]
    g = f.create_group("real/" + name)
    g.attrs["path"] = rel
    g.attrs["mode"] = mode
    g.attrs["mask"] = int(mask)
    fnv = fnv1a64(np.ascontiguousarray(a).tobytes())
    g.create_dataset("fnv", data=np.array([fnv], dtype=np.uint64).view(np.int64))
    g.create_dataset("shape", data=i32(a.shape))
    g.create_dataset("row_sums", data=i32(a.astype(np.int64).sum(1)))
    g.create_dataset("col_sums", data=i32(a.astype(np.int64).sum(0)))


def real_cases(f):
    tiny = "tiny-imagenet-200/"
    gray_val = None
    for k in range(200):
        if Image.open(os.path.join(SHARED, tiny, "val/images/val_%d.JPEG" % k)).mode == "L":
            gray_val = "val_%d.JPEG" % k
            break
    assert gray_val is not None
    for i, rel in enumerate(["val/images/val_0.JPEG", "val/images/val_1.JPEG", "val/images/" + gray_val,
                             "train/n01443537/images/n01443537_0.JPEG", "train/n01443537/images/n01443537_1.JPEG"]):
        put_real(f, "tiny%d" % i, tiny + rel)
    coco_gray = None
    for fn in sorted(os.listdir(os.path.join(SHARED, "coco128/images/train2017"))):
        if Image.open(os.path.join(SHARED, "coco128/images/train2017", fn)).mode == "L":
            coco_gray = fn
            break
    put_real(f, "coco0", "coco128/images/train2017/000000000009.jpg")
    put_real(f, "coco1", "coco128/images/val2017/" + sorted(os.listdir(os.path.join(SHARED, "coco128/images/val2017")))[0])
    if coco_gray:
        put_real(f, "coco_gray", "coco128/images/train2017/" + coco_gray)
    put_real(f, "camvid", "camvid/train/0001TP_006690.png")
    put_real(f, "camvid_mask", "camvid/trainannot/0001TP_006690.png", mask=True)


def main():
    f, path = open_ref("data_decode")
    f.attrs["pil"] = Image.__version__
    f.attrs["libjpeg_turbo"] = str(features.check_feature("libjpeg_turbo"))
    synth_cases(f)
    if os.path.isdir(SHARED):
        real_cases(f)
    else:
        print("note: %s absent, real-file digests not written" % SHARED)
    close_ref(f, path)
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
