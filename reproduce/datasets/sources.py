"""Where every dataset and weight file comes from: the registry behind `fcn data fetch`.

One Source = one remote file. Archives (.tar, .tgz, .tar.gz, .zip) are extracted into
<data-root>/<dest>/; other files are stored at <data-root>/<dest>.

Checksums: `md5`/`sha1`/`sha256` are verified when set; `checksum_origin` says who published
them. Where nobody published one, `checksum_origin` is NO_OFFICIAL_CHECKSUM: the first fetch
records the sha256 of what it got in <data-root>/checksums/<filename>.sha256 and later fetches
verify against that record (commit it to pin the file).
data/sources.json is this registry as JSON (regenerate: `fcn data list --json > data/sources.json`; a test
checks the two agree).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Source", "SOURCES", "NO_OFFICIAL_CHECKSUM", "get_source", "sources_as_json"]

NO_OFFICIAL_CHECKSUM = "no official checksum published"
_TORCHVISION = ("not published by the dataset authors; the md5 torchvision's downloader records "
                "(torchvision.datasets.{})")


@dataclass(frozen=True)
class Source:
    """One downloadable file."""

    name: str                 # the `fcn data fetch NAME`
    kind: str                 # "dataset" | "list" | "weights"
    url: str                  # official URL
    filename: str             # file name (also the name appended to a --mirror base URL)
    dest: str                 # relative to the data root: folder (archives) or file path
    description: str
    doc: str                  # data/<doc>: how to get it, licence, checksum
    md5: str | None = None
    sha1: str | None = None
    sha256: str | None = None
    checksum_origin: str = NO_OFFICIAL_CHECKSUM
    size: int | None = None   # bytes, where known exactly
    approx_size: str | None = None
    note: str = ""

    @property
    def is_archive(self) -> bool:
        return self.filename.endswith((".tar", ".tgz", ".tar.gz", ".zip"))

    @property
    def checksums(self) -> dict[str, str]:
        """Known checksums by hashlib algorithm name."""
        return {algo: value for algo, value in (("md5", self.md5), ("sha1", self.sha1),
                                                 ("sha256", self.sha256)) if value}


def _dataset(name: str, url: str, description: str, doc: str, **kw) -> Source:
    filename = url.rsplit("/", 1)[1]
    return Source(name=name, kind="dataset", url=url, filename=filename, dest=kw.pop("dest", name),
                  description=description, doc=doc, **kw)


def _weights(name: str, url: str, description: str, **kw) -> Source:
    filename = url.rsplit("/", 1)[1]
    return Source(name=name, kind="weights", url=url, filename=filename, dest=f"weights/{filename}",
                  description=description, doc="weights.md", **kw)


_DL = "http://dl.caffe.berkeleyvision.org/"
_FCN_REPO = "shelhamer/fcn.berkeleyvision.org @ 1305c7378a9f0ab44b2c936f4d60e4687e3d8743"

_DATASETS = [
    _dataset("voc2012", "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
             "PASCAL VOC 2012 trainval (JPEGImages, SegmentationClass); expected to hold the seg11valid images "
             "too (UNVERIFIED here; voc2011 is what the reference read)",
             "pascal.md", md5="6cd6e144f989b92b3379bac3b3de84fd",
             checksum_origin=_TORCHVISION.format("VOCSegmentation")),
    _dataset("voc2011", "http://host.robots.ox.ac.uk/pascal/VOC/voc2011/VOCtrainval_25-May-2011.tar",
             "PASCAL VOC 2011 trainval: the devkit the reference validates on (seg11valid)",
             "pascal.md", md5="6c3384ef61512963050cb5d687e5bf1e",
             checksum_origin=_TORCHVISION.format("VOCSegmentation")),
    Source(name="voc2011-lists", kind="list",
           url="https://raw.githubusercontent.com/shelhamer/fcn.berkeleyvision.org/master/data/pascal/seg11valid.txt",
           filename="seg11valid.txt", dest="voc2011-lists/seg11valid.txt",
           description="seg11valid.txt: the 736 VOC2011 val ids not in SBD train (FCN's validation split)",
           doc="pascal.md", sha256="4ca991bd72c251fd2485eaa9e29536502ea3800d1b1c17c151fd6a04bcfbc2cc",
           checksum_origin=f"sha256 of data/pascal/seg11valid.txt in {_FCN_REPO}, recorded by fcn-repro",
           size=8832, note="also shipped in reproduce/datasets/lists/pascal/seg11valid.txt"),
    _dataset("sbd", "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
             "SBD (Hariharan et al.): benchmark_RELEASE/dataset with img/, cls/, train.txt (8,498)",
             "pascal.md", md5="82b4d87ceb2ed10f6038a1cba92111cb",
             checksum_origin=_TORCHVISION.format("SBDataset")),
    _dataset("nyud", f"{_DL}nyud.tar.gz",
             "NYUDv2 as the FCN authors prepared it (colour, depth, HHA PNGs, 40-class segmentation .mat)",
             "nyud.md"),
    _dataset("nyud-labeled", "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat",
             "official NYUDv2 labeled set (MATLAB v7.3): 1,449 images, filled-in depths, 894-class labels",
             "nyud.md", dest="nyud-labeled/nyu_depth_v2_labeled.mat", approx_size="about 2.8 GB"),
    _dataset("nyud-mapping40", "https://github.com/ankurhanda/nyuv2-meta-data/raw/master/classMapping40.mat",
             "classMapping40.mat (mapClass: 894 NYU classes -> Gupta et al.'s 40); third-party copy of "
             "the file in Gupta et al.'s data.tgz", "nyud.md", dest="nyud-mapping40/classMapping40.mat"),
    _dataset("nyud-gupta", "http://people.eecs.berkeley.edu/~sgupta/cvpr13/data.tgz",
             "Gupta et al. (CVPR 2013) NYUDv2 data, the source of the FCN preparation (contents not "
             "verified here)", "nyud.md"),
    _dataset("siftflow", "http://www.cs.unc.edu/~jtighe/Papers/ECCV10/siftflow/SiftFlowDataset.zip",
             "SIFT Flow (LabelMe outdoor scenes): Images, SemanticLabels, GeoLabels", "siftflow.md"),
    _dataset("voc2010", "http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar",
             "PASCAL VOC 2010 trainval: the images of PASCAL-Context", "pascal-context.md",
             md5="da459979d0c395079b5c75ee67908abb",
             checksum_origin=_TORCHVISION.format("VOCSegmentation")),
    _dataset("pascal-context", "http://www.cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz",
             "PASCAL-Context full annotations: trainval/<id>.mat (LabelMap)", "pascal-context.md",
             md5="df034edb2c12aa7d33b42b20bb1796e3",
             checksum_origin="not published by the dataset authors; the md5 recorded by third-party "
                             "download scripts (e.g. the tf-image-segmentation / keras-contrib PASCAL recipes)"),
]

_BASE_NETS = [
    _weights("vgg16", "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_16_layers.caffemodel",
             "VGG16 ILSVRC classifier (Simonyan & Zisserman), the init of every VGG FCN "
             "(convert with surgery to vgg16-fcn)", approx_size="about 528 MiB (not verified)"),
    _weights("caffenet", f"{_DL}bvlc_reference_caffenet.caffemodel",
             "BVLC CaffeNet: the base net ilsvrc-nets/README.md links for FCN-AlexNet "
             "(pool before norm, as voc-fcn-alexnet/net.py)",
             sha1="4c8d77deb20ea792f84eb5e6d0a11ca0a8660a46",
             checksum_origin="BVLC model zoo, models/bvlc_reference_caffenet/readme.md (sha1)"),
    _weights("alexnet", f"{_DL}bvlc_alexnet.caffemodel",
             "BVLC AlexNet (norm before pool); FCN-AlexNet itself uses CaffeNet, see `caffenet`",
             sha1="9116a64c0fbe4459d18f4bb6b56d647b63920377",
             checksum_origin="BVLC model zoo, models/bvlc_alexnet/readme.md (sha1)"),
    _weights("googlenet", f"{_DL}bvlc_googlenet.caffemodel",
             "BVLC GoogLeNet: the trunk of voc-fcn-googlenet (the paper's Table 1 FCN-GoogLeNet, which "
             "used the authors' own GoogLeNet; ours is built on BVLC's)",
             sha1="405fc5acd08a3bb12de8ee5e23a96bec22f08204",
             checksum_origin="BVLC model zoo, models/bvlc_googlenet/readme.md (sha1)"),
]

# net name (nets.names()) -> released file, from each model directory's caffemodel-url.
# nyud-fcn32s-color-d has none (its caffemodel-url is empty) and the repo has no NYUD FCN-16s.
_FCN_WEIGHTS = {
    "voc-fcn32s": "fcn32s-heavy-pascal.caffemodel",
    "voc-fcn16s": "fcn16s-heavy-pascal.caffemodel",
    "voc-fcn8s": "fcn8s-heavy-pascal.caffemodel",
    "voc-fcn8s-atonce": "fcn8s-atonce-pascal.caffemodel",
    "voc-fcn-alexnet": "fcn-alexnet-pascal.caffemodel",
    "nyud-fcn32s-color": "nyud-fcn32s-color-heavy.caffemodel",
    "nyud-fcn32s-hha": "nyud-fcn32s-hha-heavy.caffemodel",
    "nyud-fcn32s-color-hha": "nyud-fcn32s-color-hha-heavy.caffemodel",
    "siftflow-fcn32s": "siftflow-fcn32s-heavy.caffemodel",
    "siftflow-fcn16s": "siftflow-fcn16s-heavy.caffemodel",
    "siftflow-fcn8s": "siftflow-fcn8s-heavy.caffemodel",
    "pascalcontext-fcn32s": "pascalcontext-fcn32s-heavy.caffemodel",
    "pascalcontext-fcn16s": "pascalcontext-fcn16s-heavy.caffemodel",
    "pascalcontext-fcn8s": "pascalcontext-fcn8s-heavy.caffemodel",
}

_FCNS = [_weights(net, f"{_DL}{filename}", f"released FCN weights for {net} (Caffe)")
         for net, filename in _FCN_WEIGHTS.items()]

SOURCES: dict[str, Source] = {s.name: s for s in (*_DATASETS, *_BASE_NETS, *_FCNS)}


def get_source(name: str) -> Source:
    """The Source called `name`; KeyError listing the known names otherwise."""
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCES)}") from None


def sources_as_json() -> dict:
    """The registry as a JSON-ready dict (what data/sources.json holds)."""
    return {
        "format": "fcn-repro data sources v1: one entry per `fcn data fetch NAME`; checksum fields are "
                  "null where unknown and checksum_origin says who published them",
        "sources": [dict(asdict(s), archive=s.is_archive) for s in SOURCES.values()],
    }
