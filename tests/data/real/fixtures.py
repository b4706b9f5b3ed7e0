"""Builders of tiny dataset trees in the real on-disk formats, shared by the loader and command tests.

Each ``make_*(root)`` writes a few images and the dataset's own annotation files under ``root`` (the
data root) and returns the values the loader must parse back, so tests assert against known answers.
"""
from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image

WIDTH, HEIGHT = 40, 30  # every fixture image is 40 wide, 30 high


def write_image(path: Path, value: int = 128, size: tuple[int, int] = (WIDTH, HEIGHT), fmt: str = "JPEG") -> None:
    """A flat-grey image whose red channel encodes ``value`` (so tests can tell images apart)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[..., 0] = value
    pixels[..., 1] = 100
    Image.fromarray(pixels).save(path, format=fmt, quality=95)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


# --- CUB-200-2011 ---------------------------------------------------------------------------------------

CUB_PARTS = ("back", "left eye", "tail")
CUB_ATTRIBUTES = ("has_bill_shape::curved", "has_wing_color::blue")


def make_cub(root: Path, segmentations: bool = True) -> dict:
    """3 classes × 2 images; image k (1-based) is train when k is odd. 3 parts, 2 attributes."""
    home = root / "CUB_200_2011"
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    images, labels, split, boxes, locs, votes, continuous = [], [], [], [], [], [], []
    for k in range(1, 7):
        cls = (k - 1) // 2
        rel = f"{classes[cls]}/bird_{k:04d}.jpg"
        write_image(home / "images" / rel, value=20 * k)
        images.append(f"{k} {rel}")
        labels.append(f"{k} {cls + 1}")
        split.append(f"{k} {k % 2}")
        boxes.append(f"{k} {k}.0 2.0 10.0 {5 + k}.0")
        for p in range(1, len(CUB_PARTS) + 1):
            visible = int(p != 2 or k != 1)  # image 1's part 2 is hidden
            x, y = (3.0 * p + k, 2.0 * p) if visible else (0.0, 0.0)
            locs.append(f"{k} {p} {x} {y} {visible}")
        for a in range(1, len(CUB_ATTRIBUTES) + 1):
            extra = " 0" if (k, a) == (3, 2) else ""  # a malformed line with an extra field, as in the real file
            votes.append(f"{k} {a} {(k + a) % 2} 3 12.5{extra}")
        if segmentations:
            seg = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
            seg[5:15, 10:30] = 255
            seg[15:17, 10:30] = 102  # a soft edge (2 of 5 annotators) below the threshold
            path = root / "segmentations" / rel.replace(".jpg", ".png")
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(seg, mode="L").save(path)
    for c in range(3):
        continuous.append(" ".join(["75.0", "20.0"] if c != 1 else ["10.0", "50.0"]))
    write_lines(home / "images.txt", images)
    write_lines(home / "image_class_labels.txt", labels)
    write_lines(home / "train_test_split.txt", split)
    write_lines(home / "classes.txt", [f"{c + 1} {name}" for c, name in enumerate(classes)])
    write_lines(home / "bounding_boxes.txt", boxes)
    write_lines(home / "parts" / "parts.txt", [f"{p + 1} {n}" for p, n in enumerate(CUB_PARTS)])
    write_lines(home / "parts" / "part_locs.txt", locs)
    write_lines(root / "attributes.txt", [f"{a + 1} {n}" for a, n in enumerate(CUB_ATTRIBUTES)])
    write_lines(home / "attributes" / "image_attribute_labels.txt", votes)
    write_lines(home / "attributes" / "class_attribute_labels_continuous.txt", continuous)
    return {"home": home, "classes": ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross"]}


# --- CelebA -------------------------------------------------------------------------------------------------

CELEBA_ATTRIBUTES = tuple(f"Attr_{a}" for a in range(40))


def make_celeba(root: Path, in_the_wild: bool = True) -> dict:
    """6 faces; partition 0, 0, 1, 1, 2, 2. Attribute a of image k is on iff (a + k) % 3 == 0.
    In-the-wild images are 40×30 (area 1200); the face box of image k is (2k, 1, 20, 20 - 2k)."""
    home = root / "celeba"
    names = [f"{k:06d}.jpg" for k in range(1, 7)]
    attrs, aligned, wild, boxes = [], [], [], []
    for k, name in enumerate(names, start=1):
        write_image(home / "img_align_celeba" / name, value=10 * k)
        if in_the_wild:
            write_image(home / "img_celeba" / name, value=10 * k)
        attrs.append(f"{name} " + " ".join(" 1" if (a + k) % 3 == 0 else "-1" for a in range(40)))
        aligned.append(f"{name}   " + "  ".join(str(v) for v in (10 + k, 12, 28, 12, 20, 18, 12, 24, 27, 24)))
        wild.append(f"{name}   " + "  ".join(str(v) for v in (5 + k, 6, 15, 6, 10, 12, 6, 15, 14, 15)))
        boxes.append(f"{name}   {2 * k}  1  20  {20 - 2 * k}")
    header = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
    write_lines(home / "list_attr_celeba.txt", ["6", " ".join(CELEBA_ATTRIBUTES) + " ", *attrs])
    write_lines(home / "list_landmarks_align_celeba.txt", ["6", header, *aligned])
    write_lines(home / "list_bbox_celeba.txt", ["6", "image_id x_1 y_1 width height", *boxes])
    write_lines(home / "list_eval_partition.txt", [f"{n} {(k // 2)}" for k, n in enumerate(names)])
    if in_the_wild:
        write_lines(home / "list_landmarks_celeba.txt", ["6", header, *wild])
    return {"home": home, "names": names}


# --- MNIST --------------------------------------------------------------------------------------------------

MNIST_TRAIN_LABELS = (3, 8, 1, 3, 8)
MNIST_TEST_LABELS = (8, 3, 0)


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file of unsigned bytes: magic (0, 0, 0x08, ndim), big-endian int32 dims, then the data."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def make_mnist(root: Path, gz: bool = True, train_labels: tuple[int, ...] = MNIST_TRAIN_LABELS,
               test_labels: tuple[int, ...] = MNIST_TEST_LABELS) -> Path:
    """Train digits 3, 8, 1, 3, 8; test 8, 3, 0 (or the labels given); every pixel of an image equals 10 × its
    digit."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, labels in (("train", train_labels), ("t10k", test_labels)):
        images = np.stack([np.full((28, 28), 10 * d, dtype=np.uint8) for d in labels])
        for kind, array in (("images-idx3", images), ("labels-idx1", np.array(labels, dtype=np.uint8))):
            data = idx_bytes(array)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / name).write_bytes(data)
    return raw


# --- CIFAR-100 ----------------------------------------------------------------------------------------------

class _Py2Pickler(pickle._Pickler):
    """Writes ``str`` and ``bytes`` as Python 2 ``str`` (SHORT_BINSTRING / BINSTRING), as cPickle did."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: str | bytes) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def py2_pickle(obj: Any) -> bytes:
    """``obj`` pickled the way the CIFAR python batches were written: Python 2 cPickle, protocol 2, numpy 1.x
    module names (``numpy.core.multiarray._reconstruct``), strings as Python 2 ``str``."""
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def make_cifar100(root: Path) -> Path:
    """4 train images (labels 5, 0, 99, 5), 2 test (7, 7); image n has every byte equal to 10·n + label % 10.
    Written like the real files (:func:`py2_pickle`), with their keys."""
    home = root / "cifar-100-python"
    home.mkdir(parents=True, exist_ok=True)
    for split, labels in (("train", [5, 0, 99, 5]), ("test", [7, 7])):
        data = np.stack([np.full(3072, 10 * n + y % 10, dtype=np.uint8) for n, y in enumerate(labels)])
        (home / split).write_bytes(py2_pickle({
            "filenames": [f"img_{n}.png" for n in range(len(labels))], "batch_label": f"{split}ing batch 1 of 1",
            "fine_labels": labels, "coarse_labels": [0] * len(labels), "data": data}))
    (home / "meta").write_bytes(py2_pickle({"fine_label_names": [f"class{c}" for c in range(100)],
                                            "coarse_label_names": [f"super{c}" for c in range(20)]}))
    return home


# --- Caltech-256 --------------------------------------------------------------------------------------------

def make_caltech256(root: Path) -> Path:
    """Classes ak47 (5 images), american-flag (5), backpack (3), plus clutter and stray files."""
    home = root / "caltech256" / "256_ObjectCategories"
    for number, (name, count) in enumerate((("ak47", 5), ("american-flag", 5), ("backpack", 3), ("clutter", 4)), 1):
        folder = home / f"{number if number < 4 else 257:03d}.{name}"
        for k in range(1, count + 1):
            write_image(folder / f"{number:03d}_{k:04d}.jpg", value=10 * number)
    write_image(home / "002.american-flag" / "greg" / "extra.jpg")  # a nested folder: ignored
    (home / "003.backpack" / "RENAME2").write_text("not an image")  # ignored
    return home


# --- Stanford Dogs ------------------------------------------------------------------------------------------

DOG_FOLDERS = ("n02085620-Chihuahua", "n02085782-Japanese_spaniel")


def dog_xml(boxes: list[tuple[int, int, int, int]], width: int = WIDTH, height: int = HEIGHT,
            folder: str = "02085620", stem: str = "n02085620_1") -> str:
    """An annotation file as in ``annotation.tar`` (ImageNet layout; corners 0-based inclusive)."""
    objects = "".join(
        f"\t<object>\n\t\t<name>Chihuahua</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{a}</xmin>\n\t\t\t<ymin>{b}</ymin>\n"
        f"\t\t\t<xmax>{c}</xmax>\n\t\t\t<ymax>{d}</ymax>\n\t\t</bndbox>\n\t</object>\n" for a, b, c, d in boxes)
    return (f"<annotation>\n\t<folder>{folder}</folder>\n\t<filename>{stem}</filename>\n\t<source>\n"
            f"\t\t<database>ImageNet database</database>\n\t</source>\n\t<size>\n\t\t<width>{width}</width>\n"
            f"\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>\n\t<segment>0</segment>\n"
            f"{objects}</annotation>\n")


def make_stanford_dogs(root: Path) -> Path:
    """2 breeds × 2 images; image 1 of each breed is train. Image k's box: (k, 2, 10 + k, 12), 0-based
    inclusive as in the real files; the second Chihuahua also has a second dog at (20, 5, 30, 25)."""
    home = root / "stanford_dogs"
    lists: dict[str, list] = {"train": [], "test": []}
    k = 0
    for label, folder in enumerate(DOG_FOLDERS, start=1):
        for n in (1, 2):
            k += 1
            stem = f"{folder.split('-')[0]}_{n}"
            write_image(home / "Images" / folder / f"{stem}.jpg", value=20 * k)
            boxes = [(k, 2, 10 + k, 12)] + ([(20, 5, 30, 25)] if k == 2 else [])
            (home / "Annotation" / folder).mkdir(parents=True, exist_ok=True)
            (home / "Annotation" / folder / stem).write_text(dog_xml(boxes, folder=folder[1:9], stem=stem))
            lists["train" if n == 1 else "test"].append((f"{folder}/{stem}.jpg", f"{folder}/{stem}", label))
    (home / "lists").mkdir(parents=True, exist_ok=True)
    for split, rows in lists.items():
        scipy.io.savemat(home / "lists" / f"{split}_list.mat", {
            "file_list": np.array([r[0] for r in rows], dtype=object).reshape(-1, 1),
            "annotation_list": np.array([r[1] for r in rows], dtype=object).reshape(-1, 1),
            "labels": np.array([[r[2]] for r in rows], dtype=np.uint8)})
    return home


# --- Cats vs dogs -------------------------------------------------------------------------------------------

def make_cats_vs_dogs(root: Path) -> Path:
    """5 good cats, 5 good dogs, plus an empty Cat/666.jpg, a PNG saved as Dog/11702.jpg and Cat/Thumbs.db."""
    home = root / "PetImages"
    for folder in ("Cat", "Dog"):
        for k in range(5):
            write_image(home / folder / f"{k}.jpg", value=10 * k)
    (home / "Cat" / "666.jpg").write_bytes(b"")
    write_image(home / "Dog" / "11702.jpg", fmt="PNG")
    (home / "Cat" / "Thumbs.db").write_bytes(b"\0" * 16)
    return home


# --- FGVC-Aircraft ------------------------------------------------------------------------------------------

AIRCRAFT_VARIANTS = ("707-320", "A300B4", "Cessna 172")


def make_fgvc_aircraft(root: Path) -> Path:
    """6 images (40×50 with the 20-row banner); trainval = ids ending 1..3, test = 4..6, variant k % 3.
    Image k's box (1-based inclusive): (k, 2, 30, 45)."""
    data = root / "fgvc-aircraft-2013b" / "data"
    ids = [f"10{k:05d}" for k in range(1, 7)]
    split = {"trainval": ids[:3], "test": ids[3:], "train": ids[:2], "val": ids[2:3]}
    for k, image_id in enumerate(ids, start=1):
        write_image(data / "images" / f"{image_id}.jpg", value=20 * k, size=(WIDTH, 50))
    write_lines(data / "images_box.txt", [f"{i} {k} 2 30 45" for k, i in enumerate(ids, start=1)])
    variant = {i: AIRCRAFT_VARIANTS[k % 3] for k, i in enumerate(ids, start=1)}
    for level, names in (("variant", AIRCRAFT_VARIANTS), ("family", ("Boeing 707", "A300", "Cessna 172")),
                         ("manufacturer", ("Boeing", "Airbus", "Cessna"))):
        write_lines(data / {"variant": "variants.txt", "family": "families.txt",
                            "manufacturer": "manufacturers.txt"}[level], list(names))
        for name, members in split.items():
            write_lines(data / f"images_{level}_{name}.txt",
                        [f"{i} {names[AIRCRAFT_VARIANTS.index(variant[i])]}" for i in members])
    return data


# --- Stanford Cars ------------------------------------------------------------------------------------------

def _car_annotations(rows: list[tuple[str, int, tuple[int, int, int, int]]]) -> np.ndarray:
    fields = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")
    table = np.empty((1, len(rows)), dtype=[(f, "O") for f in fields])
    for k, (fname, label, box) in enumerate(rows):
        table[0, k] = tuple(np.array([[v]]) for v in (*box, label)) + (np.array([fname]),)
    return table


def make_stanford_cars(root: Path) -> Path:
    """2 classes; train 00001 (class 1), 00002 (class 2); test 00001 (class 2), 00002 (class 1).
    Boxes 1-based inclusive. (torchvision cannot read a .mat holding a single annotation.)"""
    home = root / "stanford_cars"
    (home / "devkit").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(home / "devkit" / "cars_meta.mat",
                     {"class_names": np.array(["AM General Hummer SUV 2000", "Acura RL Sedan 2012"], dtype=object)})
    train = [("00001.jpg", 1, (3, 4, 20, 25)), ("00002.jpg", 2, (1, 1, 40, 30))]
    test = [("00001.jpg", 2, (5, 6, 15, 16)), ("00002.jpg", 1, (1, 1, 8, 8))]
    scipy.io.savemat(home / "devkit" / "cars_train_annos.mat", {"annotations": _car_annotations(train)})
    scipy.io.savemat(home / "cars_test_annos_withlabels.mat", {"annotations": _car_annotations(test)})
    for folder, rows in (("cars_train", train), ("cars_test", test)):
        for k, (fname, _, _) in enumerate(rows):
            write_image(home / folder / fname, value=30 * (k + 1))
    return home


# --- PASCAL VOC 2012 ----------------------------------------------------------------------------------------

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")  # the devkit's order
VOC_TRAIN = {"2008_000001": {"cat": 1, "dog": 0}, "2008_000002": {"person": 1, "bicycle": 1},
             "2008_000003": {"cat": 0}}
VOC_VAL = {"2008_000004": {"aeroplane": 1}}


def make_voc(root: Path) -> Path:
    """3 train and 1 val images; entries not listed are -1 (absent), 0 = difficult only."""
    home = root / "VOCdevkit" / "VOC2012"
    main = home / "ImageSets" / "Main"
    splits = {"train": VOC_TRAIN, "val": VOC_VAL, "trainval": {**VOC_TRAIN, **VOC_VAL}}
    for split, table in splits.items():
        write_lines(main / f"{split}.txt", list(table))
        for cls in VOC_CLASSES:
            write_lines(main / f"{cls}_{split}.txt", [f"{i} {table[i].get(cls, -1):>2}" for i in table])
    for k, image_id in enumerate(splits["trainval"]):
        write_image(home / "JPEGImages" / f"{image_id}.jpg", value=40 * k)
    (home / "Annotations").mkdir(parents=True, exist_ok=True)
    return home


# --- SUN attributes -----------------------------------------------------------------------------------------

SUN_ATTRIBUTES = ("sailing/boating", "driving", "natural light")


def make_sun_attributes(root: Path) -> dict:
    """5 abbey + 5 apartment_building/outdoor images; image n's votes are (n/10, 1 − n/10, 1/3)."""
    home = root / "sun_attributes"
    files = [f"a/abbey/sun_{n}.jpg" for n in range(5)] + [f"a/apartment_building/outdoor/sun_{n}.jpg"
                                                          for n in range(5, 10)]
    for n, rel in enumerate(files):
        write_image(home / "images" / rel, value=20 * n)
    votes = np.array([[n / 10, 1 - n / 10, 1 / 3] for n in range(10)])
    db = home / "SUNAttributeDB"
    db.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(db / "images.mat", {"images": np.array(files, dtype=object).reshape(-1, 1)})
    scipy.io.savemat(db / "attributes.mat", {"attributes": np.array(SUN_ATTRIBUTES, dtype=object).reshape(-1, 1)})
    scipy.io.savemat(db / "attributeLabels_continuous.mat", {"labels_cv": votes})
    return {"files": files, "votes": votes}


# --- iNaturalist 2017 ---------------------------------------------------------------------------------------

def make_inat2017(root: Path) -> Path:
    """Categories 0 (Aves), 1 (Plantae); train images 10, 11, 12 (labels 1, 0, 1), val 20 (label 0).
    Boxes (COCO x, y, w, h) only for image 10: (2, 3, 10, 5) and (20, 10, 5, 5)."""
    home = root / "inat2017"
    categories = [{"id": 1, "name": "Quercus alba", "supercategory": "Plantae"},
                  {"id": 0, "name": "Corvus corax", "supercategory": "Aves"}]
    folders = {0: "Aves/Corvus corax", 1: "Plantae/Quercus alba"}
    for split, items in (("train", {10: 1, 11: 0, 12: 1}), ("val", {20: 0})):
        images = [{"id": i, "file_name": f"train_val_images/{folders[c]}/{i}.jpg", "width": WIDTH,
                   "height": HEIGHT} for i, c in items.items()]
        annotations = [{"id": i, "image_id": i, "category_id": c} for i, c in items.items()]
        for image in images:
            write_image(home / image["file_name"], value=5 * image["id"])
        (home / f"{split}2017.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}))
        if split == "train":
            boxes = [{"id": 1, "image_id": 10, "category_id": 1, "bbox": [2, 3, 10, 5]},
                     {"id": 2, "image_id": 10, "category_id": 1, "bbox": [20, 10, 5, 5]}]
            (home / "train_2017_bboxes.json").write_text(json.dumps(
                {"images": images[:1], "annotations": boxes, "categories": categories}))
    return home


# --- ImageNet -----------------------------------------------------------------------------------------------

def make_imagenet(root: Path) -> Path:
    """train: 2 wnids × 2 images; val: 2 wnids × 1 image (ImageFolder layout, .JPEG)."""
    home = root / "imagenet"
    for split, count in (("train", 2), ("val", 1)):
        for wnid in ("n01440764", "n01443537"):
            for k in range(count):
                write_image(home / split / wnid / f"{wnid}_{k}.JPEG")
    return home


def make_tar(source: Path, archive: Path, members: list[str]) -> Path:
    """A ``.tgz`` of ``members`` (paths relative to ``source``), as the datasets ship their archives."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tf:
        for member in members:
            tf.add(source / member, arcname=member)
    return archive
