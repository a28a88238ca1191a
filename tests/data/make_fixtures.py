# Writes the small broken-input fixtures of tests/test_data_readers.c under tests/data/ (committed; rerun
# only to change them): /usr/bin/python3 tests/data/make_fixtures.py
import io
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def img(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def write(rel, data):
    p = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)


def png(a, mode=None):
    b = io.BytesIO()
    Image.fromarray(a, mode).save(b, "PNG")
    return b.getvalue()


def jpg(a):
    b = io.BytesIO()
    Image.fromarray(a).save(b, "JPEG", quality=90)
    return b.getvalue()


# Decoding: cut files and a file that is no image at all.
p = png(img(16, 16, 1))
write("decode/truncated.png", p[: len(p) // 2])
write("decode/no_iend.png", p[:-12])
j = jpg(img(32, 32, 2))
write("decode/truncated.jpg", j[: len(j) // 2])
write("decode/not_an_image.jpg", b"this is a text file, not a JPEG\n")

# Image folder: class "cat" holds one truncated PNG among good files.
write("folder/cat/a.png", png(img(8, 8, 3)))
write("folder/cat/b.png", p[: len(p) // 2])
write("folder/dog/c.jpg", jpg(img(8, 8, 4)))
write("folder/dog/d.png", png(img(8, 8, 5)))

# COCO: malformed JSON (a missing comma on line 3).
write("coco_bad/annotations/instances_train.json",
      b'{\n  "images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}],\n'
      b'  "annotations": [] "categories": []\n}\n')
write("coco_bad/images/train/a.png", png(img(8, 8, 6)))

# YOLO: a good split, a class id out of range (line 2), a label file for a missing image.
write("yolo/names.txt", b"red\ngreen\nblue\n")
for split in ["train", "badclass", "orphan"]:
    write("yolo/images/%s/a.png" % split, png(img(8, 10, 7)))
write("yolo/images/train/b.png", png(img(8, 10, 8)))
write("yolo/images/badclass/b.png", png(img(8, 10, 8)))
write("yolo/labels/train/a.txt", b"0 0.5 0.5 0.5 0.25\n2 0.25 0.75 0.5 0.5\n")
write("yolo/labels/badclass/a.txt", b"1 0.5 0.5 0.5 0.5\n3 0.5 0.5 0.1 0.1\n")
write("yolo/labels/orphan/a.txt", b"1 0.5 0.5 0.5 0.5\n")
write("yolo/labels/orphan/ghost.txt", b"0 0.5 0.5 0.5 0.5\n")

# Segmentation: a good pair, a mask of the wrong size, an image without a mask.
write("seg/classes.txt", b"0 sky\n1 road\n2 car\n3 Void (ignored)\n")
m = np.array([[0, 1, 2, 3, 0, 1], [2, 3, 0, 1, 2, 3], [0, 0, 1, 1, 2, 2], [3, 3, 3, 0, 0, 0]], dtype=np.uint8)
write("seg/train/a.png", png(img(4, 6, 9)))
write("seg/trainannot/a.png", png(m))
write("seg/train/b.png", png(img(4, 6, 10)))
write("seg/trainannot/b.png", png(m[:3]))
write("seg/train/c.png", png(img(4, 6, 11)))

# COCO: category ids out of order and with gaps, a crowd box, a zero-area box, an image without boxes.
write("coco/images/train/a.png", png(img(10, 12, 12)))
write("coco/images/train/b.png", png(img(6, 8, 13)))
write("coco/annotations/instances_train.json", b'''{
  "images": [{"id": 42, "file_name": "a.png", "width": 12, "height": 10},
             {"id": 7, "file_name": "b.png", "width": 8, "height": 6}],
  "annotations": [
    {"id": 1, "image_id": 42, "category_id": 90, "bbox": [1.5, 2, 4, 3], "area": 12, "iscrowd": 0},
    {"id": 2, "image_id": 42, "category_id": 3, "bbox": [0, 0, 12, 10], "area": 120, "iscrowd": 1},
    {"id": 3, "image_id": 42, "category_id": 5, "bbox": [2, 2, 0, 3], "area": 0, "iscrowd": 0}],
  "categories": [{"id": 90, "name": "toothbrush"}, {"id": 3, "name": "car"}, {"id": 5, "name": "bus"}]
}
''')
