"""Registry of the real datasets: name → loader, on-disk layout, the files to obtain, published checksums.

This module is the one source of truth for layouts and checksums: ``attnbook data`` reads it and
``data/README.md`` is rendered from it (:func:`render_markdown`; a test keeps the two in sync).
A checksum appears here only when it is published in a source we can name (``md5_source``); one whose
source does not vouch for it (a commented-out entry) is marked ``verified=False``: reported when it differs,
never enforced. For the rest, ``attnbook data prepare`` records the sha256 of the user's archives in
``<root>/.attnbook-checksums.json`` and of every extracted file in ``<root>/.attnbook-manifests/<name>.json``.
Paths are relative to the data root (see :func:`attnbook.data.real.base.default_root`);
``"a | b"`` means either path will do.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from attnbook.data.real.paths import DatasetMissingError, missing_paths, prepare_hint, resolve_root

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
TV = "torchvision/datasets/"  # where torchvision's published md5s live, cited per item


@dataclass(frozen=True)
class Item:
    """A file the user obtains from the dataset's source.

    ``action``: ``extract`` an archive into ``dest``, ``copy`` a plain file into ``dest``, or ``link`` it
    there for a dataset-specific ``finalize`` step. ``md5`` only when published (``md5_source`` names where);
    ``verified=False`` when the source does not vouch for it (reported, never enforced).
    """

    name: str
    dest: str
    action: Literal["extract", "copy", "link"] = "extract"
    md5: str | None = None
    md5_source: str = ""
    size: str = ""
    optional: bool = False
    verified: bool = True


@dataclass(frozen=True)
class FileChecksum:
    """A published checksum of a file as it lies in the root after extraction (``verified`` as in :class:`Item`)."""

    path: str
    md5: str
    source: str
    verified: bool = True


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the data command and the README need to know about one dataset."""

    name: str
    title: str
    loader: str  # "module:Class"
    home: str  # folder under the root
    required: tuple[str, ...]
    items: tuple[Item, ...]
    url: str
    licence: str
    optional: tuple[str, ...] = ()
    files: tuple[FileChecksum, ...] = ()
    download: tuple[str, dict[str, Any]] | None = None  # torchvision class + kwargs for `prepare --download`
    finalize: str | None = None  # "module:function(home)" run after prepare
    notes: str = ""

    def home_dir(self, root: str | os.PathLike | None = None) -> Path:
        """The dataset's folder under the data root (``root``, else the default root)."""
        return resolve_root(root) / self.home


def _cub() -> DatasetSpec:
    home = "CUB_200_2011"
    return DatasetSpec(
        name="cub", title="CUB-200-2011", loader="attnbook.data.real.cub:CUB200", home=home,
        required=tuple(f"{home}/{p}" for p in (
            "images", "images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt",
            "bounding_boxes.txt", "parts/parts.txt", "parts/part_locs.txt",
            "attributes/image_attribute_labels.txt", "attributes/class_attribute_labels_continuous.txt"))
        + (f"attributes.txt | {home}/attributes/attributes.txt | {home}/attributes.txt",),
        optional=(f"segmentations | {home}/segmentations",),
        items=(Item("CUB_200_2011.tgz", "", size="≈1.1 GB"),
               Item("segmentations.tgz", "", optional=True)),
        url="https://www.vision.caltech.edu/datasets/cub_200_2011/ "
            "(files: https://data.caltech.edu/records/65de6-vp158)",
        licence="no explicit licence; images from Flickr, for non-commercial research (see the source page)",
        notes="The archive puts `attributes.txt` (the 312 attribute names) at its top level, beside "
              "`CUB_200_2011/`; both places are accepted. `segmentations.tgz` adds "
              "`segmentations/<class_dir>/<image>.png` (soft masks averaged over annotators, thresholded at 0.5).",
    )


def _celeba() -> DatasetSpec:
    files = {  # name: published md5 (torchvision/datasets/celeba.py)
        "list_attr_celeba.txt": "75e246fa4810816ffd6ee81facbd244c",
        "list_bbox_celeba.txt": "00566efa6fedff7a56946cd1c10f1c16",
        "list_landmarks_align_celeba.txt": "cc24ecafdb5b50baae59b03474781f8c",
        "list_eval_partition.txt": "d32c9cbf5e040fd4025c592c306e6668",
    }
    src = TV + "celeba.py"
    return DatasetSpec(
        name="celeba", title="CelebA", loader="attnbook.data.real.celeba:CelebA", home="celeba",
        required=("celeba/img_align_celeba",) + tuple(f"celeba/{f}" for f in files),
        optional=("celeba/img_celeba", "celeba/list_landmarks_celeba.txt", "celeba/identity_CelebA.txt"),
        items=(Item("img_align_celeba.zip", "celeba", md5="00d2c5bc6d35e252742224ab0c1e8fcb", md5_source=src,
                    size="≈1.4 GB"),)
        + tuple(Item(f, "celeba", action="copy", md5=m, md5_source=src) for f, m in files.items())
        + (Item("list_landmarks_celeba.txt", "celeba", action="copy", md5="063ee6ddb681f96bc9ca28c6febb9d1a",
                md5_source=src + " (commented-out entry)", optional=True, verified=False),
           Item("identity_CelebA.txt", "celeba", action="copy", md5="32bd1bd63d3c78cd57e08160ec5ed1e2",
                md5_source=src, optional=True)),
        url="https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html",
        licence="non-commercial research purposes only (CelebA agreement)",
        download=("CelebA", {"split": "all"}),
        notes="The in-the-wild images come only as a 14-part 7-Zip archive (`img_celeba.7z.001` … "
              "`img_celeba.7z.014`, ≈10 GB, folder `Img/img_celeba.7z/` of the CelebA Drive) that neither "
              "`prepare` nor torchvision can unpack: put all 14 parts in one folder, run "
              "`7z x img_celeba.7z.001 -o<root>/celeba` (creates `celeba/img_celeba/`), then `attnbook data "
              "prepare celeba --from DIR` with `list_landmarks_celeba.txt` (folder `Anno/`) in DIR, so that the "
              "manifest covers the images. The md5 of `list_landmarks_celeba.txt` comes from a commented-out line "
              "of torchvision: a difference is reported, not enforced. `--download` uses torchvision (aligned "
              "images only; needs the `gdown` package, Google Drive quotas apply).",
    )


def _mnist() -> DatasetSpec:
    src = TV + "mnist.py"
    files = {
        "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "≈9.9 MB"),
        "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", "≈29 KB"),
        "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", "≈1.6 MB"),
        "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", "≈4.5 KB"),
    }
    return DatasetSpec(
        name="mnist", title="MNIST", loader="attnbook.data.real.mnist:MNIST", home="MNIST/raw",
        required=tuple(f"MNIST/raw/{f} | MNIST/raw/{f}.gz" for f in files),
        items=tuple(Item(f"{f}.gz", "MNIST/raw", action="copy", md5=m, md5_source=src, size=s)
                    for f, (m, s) in files.items()),
        url="http://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)",
        licence="CC BY-SA 3.0 (as stated by the dataset's authors)",
        download=("MNIST", {}),
        notes="The loader reads the idx files gzipped or not (torchvision's layout `MNIST/raw/`).",
    )


def _cifar100() -> DatasetSpec:
    src = TV + "cifar.py"
    return DatasetSpec(
        name="cifar100", title="CIFAR-100", loader="attnbook.data.real.cifar:CIFAR100", home="cifar-100-python",
        required=("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
        items=(Item("cifar-100-python.tar.gz", "", md5="eb9058c3a382ffc7106e4002c42a8d85", md5_source=src,
                    size="≈161 MB"),),
        files=(FileChecksum("cifar-100-python/train", "16019d7e3df5f24257cddd939b257f8d", src),
               FileChecksum("cifar-100-python/test", "f0ef6b0ae62326f3e7ffdfab6717acfc", src),
               FileChecksum("cifar-100-python/meta", "7973b15100ade9c7d40fb424638fde48", src)),
        url="https://www.cs.toronto.edu/~kriz/cifar.html",
        licence="no explicit licence (free for research, cite Krizhevsky 2009)",
        download=("CIFAR100", {}),
    )


def _caltech256() -> DatasetSpec:
    return DatasetSpec(
        name="caltech256", title="Caltech-256", loader="attnbook.data.real.caltech:Caltech256", home="caltech256",
        required=("caltech256/256_ObjectCategories",),
        items=(Item("256_ObjectCategories.tar", "caltech256", md5="67b4f42ca05d46448c6bb8ecd2220f6d",
                    md5_source=TV + "caltech.py", size="≈1.2 GB"),),
        url="https://data.caltech.edu/records/nyy15-4j048",
        licence="CC BY 4.0 (Caltech data repository record)",
        download=("Caltech256", {}),
        notes="No official split: the loader draws a seeded split of 30 or 60 training and 25 test images "
              "per class (classes with fewer images give fewer test images); class 257 (clutter) is dropped.",
    )


def _stanford_dogs() -> DatasetSpec:
    home = "stanford_dogs"
    return DatasetSpec(
        name="stanford_dogs", title="Stanford Dogs", loader="attnbook.data.real.dogs:StanfordDogs", home=home,
        required=(f"{home}/Images", f"{home}/Annotation",
                  f"{home}/lists/train_list.mat | {home}/train_list.mat",
                  f"{home}/lists/test_list.mat | {home}/test_list.mat"),
        items=(Item("images.tar", home, size="≈757 MB"), Item("annotation.tar", home, size="≈21 MB"),
               Item("lists.tar", f"{home}/lists", size="≈0.5 MB")),
        url="http://vision.stanford.edu/aditya86/ImageNetDogs/",
        licence="ImageNet terms of access (non-commercial research)",
        notes="Boxes come from the per-image XML files in `Annotation/`; an image with several dogs gets the "
              "box enclosing all of them. The XML corners are 0-based inclusive pixel indices (ImageNet style: "
              "`xmax` = width − 1 at the right edge); the loader makes them exclusive (+1) and clips them to "
              "the image.",
    )


def _cats_vs_dogs() -> DatasetSpec:
    return DatasetSpec(
        name="cats_vs_dogs", title="Cats vs dogs (Microsoft PetImages)",
        loader="attnbook.data.real.folder_datasets:CatsVsDogs", home="PetImages",
        required=("PetImages/Cat", "PetImages/Dog"),
        items=(Item("kagglecatsanddogs_5340.zip", "", size="≈790 MB"),),
        url="https://www.microsoft.com/en-us/download/details.aspx?id=54765",
        licence="CDLA-Permissive-2.0 (shipped inside the zip)",
        notes="About 1,700 files are empty, corrupt or not JPEG/JFIF; like TensorFlow Datasets (which BLA used) "
              "the loader skips files without `JFIF` in their first 512 bytes (what TFDS's `peek(10)` on a zip "
              "member actually returns), leaving 23,262 images (BLA §4.1), and lists them in `dataset.skipped`. "
              "No official split: seeded 80/20 (18,609 / 4,653).",
    )


def _fgvc_aircraft() -> DatasetSpec:
    home = "fgvc-aircraft-2013b"
    return DatasetSpec(
        name="fgvc_aircraft", title="FGVC-Aircraft", loader="attnbook.data.real.aircraft:FGVCAircraft", home=home,
        required=tuple(f"{home}/data/{p}" for p in (
            "images", "variants.txt", "families.txt", "manufacturers.txt", "images_box.txt",
            "images_variant_trainval.txt", "images_variant_test.txt")),
        items=(Item("fgvc-aircraft-2013b.tar.gz", "", size="≈2.8 GB"),),
        url="https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/",
        licence="non-commercial research only (images © their photographers, see the source page)",
        download=("FGVCAircraft", {}),
        notes="Images carry a 20-pixel copyright banner at the bottom (`remove_banner=True` crops it).",
    )


def _stanford_cars() -> DatasetSpec:
    home = "stanford_cars"
    return DatasetSpec(
        name="stanford_cars", title="Stanford Cars", loader="attnbook.data.real.cars:StanfordCars", home=home,
        required=(f"{home}/devkit/cars_meta.mat", f"{home}/devkit/cars_train_annos.mat", f"{home}/cars_train",
                  f"{home}/cars_test", f"{home}/cars_test_annos_withlabels.mat"),
        items=(Item("car_devkit.tgz", home), Item("cars_train.tgz", home), Item("cars_test.tgz", home),
               Item("cars_test_annos_withlabels.mat", home, action="copy")),
        url="https://ai.stanford.edu/~jkrause/cars/car_dataset.html (original host offline; use a mirror)",
        licence="ImageNet-style terms (non-commercial research)",
        notes="torchvision's layout (`stanford_cars/`).",
    )


def _voc2012() -> DatasetSpec:
    home = "VOCdevkit/VOC2012"
    return DatasetSpec(
        name="voc2012", title="PASCAL VOC 2012", loader="attnbook.data.real.voc:VOC2012", home=home,
        required=(f"{home}/JPEGImages", f"{home}/ImageSets/Main"),
        items=(Item("VOCtrainval_11-May-2012.tar", "", md5="6cd6e144f989b92b3379bac3b3de84fd",
                    md5_source=TV + "voc.py", size="≈1.9 GB"),),
        url="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
        licence="images under Flickr's terms of use; annotations for research",
        download=("VOCDetection", {"year": "2012", "image_set": "trainval"}),
        notes="Multi-label targets from `ImageSets/Main/<class>_<split>.txt` (1 present, -1 absent, "
              "0 present only as 'difficult'); `difficult=` chooses how 0 counts; the 0 entries stay in "
              "`dataset.difficult` for masked evaluation.",
    )


def _sun_attributes() -> DatasetSpec:
    home = "sun_attributes"
    return DatasetSpec(
        name="sun_attributes", title="SUN Attribute Database",
        loader="attnbook.data.real.sun:SUNAttributes", home=home,
        required=(f"{home}/SUNAttributeDB/images.mat", f"{home}/SUNAttributeDB/attributes.mat",
                  f"{home}/SUNAttributeDB/attributeLabels_continuous.mat", f"{home}/images"),
        items=(Item("SUNAttributeDB.tar.gz", home), Item("SUNAttributeDB_Images.tar.gz", home)),
        url="https://cs.brown.edu/~gmpatter/sunattributes.html",
        licence="research use (see the source page); images from the SUN database",
        notes="14,340 images, 717 scene classes (the image's folder), 102 attributes (fraction of 3 voters). "
              "No official classification split: a seeded per-class split (EAT does not state its split).",
    )


def _inat2017() -> DatasetSpec:
    home = "inat2017"
    return DatasetSpec(
        name="inat2017", title="iNaturalist 2017", loader="attnbook.data.real.inat:INaturalist2017", home=home,
        required=(f"{home}/train_val_images", f"{home}/train2017.json", f"{home}/val2017.json"),
        optional=(f"{home}/train_2017_bboxes.json", f"{home}/val_2017_bboxes.json"),
        items=(Item("train_val_images.tar.gz", home, md5="7c784ea5e424efaec655bd392f87301f",
                    md5_source=TV + "inaturalist.py", size="≈186 GB"),
               Item("train_val2017.zip", home),
               Item("train_2017_bboxes.zip", home, optional=True),
               Item("val_2017_bboxes.zip", home, optional=True)),
        url="https://github.com/visipedia/inat_comp/tree/master/2017",
        licence="images under their observers' Creative Commons licences; annotations per the competition",
        notes="Boxes (COCO `[x, y, w, h]`) come from the `*_2017_bboxes.json` files, or from the main json where "
              "its annotations carry them; `with_boxes=True` keeps the images that have boxes (pointing game).",
    )


def _imagenet() -> DatasetSpec:
    src = TV + "imagenet.py"
    return DatasetSpec(
        name="imagenet", title="ImageNet (ILSVRC 2012)", loader="attnbook.data.real.folder_datasets:ImageNet",
        home="imagenet", required=("imagenet/train", "imagenet/val"),
        items=tuple(Item(name, "imagenet", "link", md5, src, size) for name, md5, size in (
            ("ILSVRC2012_img_train.tar", "1d675b47d978889d74fa0da5fadfb00e", "≈138 GB"),
            ("ILSVRC2012_img_val.tar", "29b22e2961454d5413ddabcf34fc5622", "≈6.3 GB"),
            ("ILSVRC2012_devkit_t12.tar.gz", "fa75699e90414af021442c21a62c3abf", "≈2.5 MB"))),
        url="https://image-net.org/challenges/LSVRC/2012/",
        licence="ImageNet terms of access (non-commercial research)",
        finalize="attnbook.data.real.folder_datasets:finalize_imagenet",
        notes="`prepare` links the three archives into `imagenet/` and lets torchvision's ImageNet parser sort "
              "them into `train/<wnid>/` and `val/<wnid>/` (and `meta.bin`). An existing ImageFolder copy with "
              "`train/` and `val/` works as is.",
    )


_BUILDERS = (_cub, _celeba, _mnist, _cifar100, _caltech256, _stanford_dogs, _cats_vs_dogs, _fgvc_aircraft,
             _stanford_cars, _voc2012, _sun_attributes, _inat2017, _imagenet)
CATALOG: dict[str, DatasetSpec] = {spec.name: spec for spec in (build() for build in _BUILDERS)}


def get_spec(name: str) -> DatasetSpec:
    """The catalog entry for ``name``; an unknown name raises a ValueError listing the known ones."""
    if name not in CATALOG:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(CATALOG)}")
    return CATALOG[name]


def dataset_state(name: str, root: str | os.PathLike | None = None) -> tuple[str, list[str]]:
    """("present" | "incomplete" | "missing", missing required paths) for ``name`` under ``root``."""
    spec = get_spec(name)
    root_path = resolve_root(root)
    missing = missing_paths(root_path, spec.required)
    if not missing:
        return "present", []
    return ("missing" if not spec.home_dir(root_path).exists() else "incomplete"), missing


def require_dataset(name: str, root: str | os.PathLike | None = None, also: tuple[str, ...] = ()) -> Path:
    """Check quickly that ``name`` (and the extra paths ``also``) are on disk; return its home folder.

    Raises :class:`DatasetMissingError` naming the first missing path and the command that gets it.
    """
    spec = get_spec(name)
    root_path = resolve_root(root)
    missing = missing_paths(root_path, spec.required + also)
    if missing:
        home = spec.home_dir(root_path)
        state = "not found" if not home.exists() else "incomplete"
        raise DatasetMissingError(
            f"{spec.title} {state} at {home} (missing {missing[0]}"
            f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}). "
            f"Get it with: {prepare_hint(name, spec.download is not None)}")
    return spec.home_dir(root_path)


def load_dataset(name: str, **kwargs: Any):
    """Construct the loader registered for ``name`` (keyword arguments go to its constructor)."""
    module, cls = get_spec(name).loader.split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


def _cite(source: str) -> str:
    path, _, note = source.partition(" ")
    return f"`{path}`" + (f" {note}" if note else "")


def _provenance(source: str, verified: bool) -> str:
    if verified:
        return f"published in {_cite(source)}"
    return f"unverified, from {_cite(source)}: reported, not enforced"


def _markdown(spec: DatasetSpec) -> str:
    lines = [f"### {spec.title} (`{spec.name}`)", "", f"- Source: {spec.url}", f"- Licence: {spec.licence}",
             f"- Loader: `{spec.loader.replace(':', '.')}`; lives in `<root>/{spec.home}/`", "- Files to obtain:"]
    for item in spec.items:
        checksum = (f"md5 `{item.md5}` ({_provenance(item.md5_source, item.verified)})" if item.md5
                    else "no published checksum (sha256 recorded at prepare)")
        extras = ", ".join(x for x in (item.size, "optional" if item.optional else "") if x)
        lines.append(f"  - `{item.name}` → {item.action} into `<root>/{item.dest}`"
                     f"{f' ({extras})' if extras else ''}; {checksum}")
    lines += [f"  - extracted `{f.path}`: md5 `{f.md5}` ({_provenance(f.source, f.verified)})" for f in spec.files]
    lines.append("- Expected layout (required):")
    lines += [f"  - `{p}`" for p in spec.required]
    if spec.optional:
        lines.append("- Optional:")
        lines += [f"  - `{p}`" for p in spec.optional]
    if spec.download:
        lines.append(f"- `--download`: torchvision `{spec.download[0]}`")
    if spec.notes:
        lines.append(f"- Notes: {spec.notes}")
    return "\n".join(lines)


def render_markdown() -> str:
    """The per-dataset section of ``data/README.md``, rendered from the catalog."""
    return "\n\n".join(_markdown(spec) for spec in CATALOG.values()) + "\n"
