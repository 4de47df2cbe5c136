#!/usr/bin/env python3
"""Writes the UCI optical handwritten digits (8x8, 1797 images, 10 classes) as IDX files.

Reads scikit-learn's bundled copy, `sklearn/datasets/data/digits.csv.gz` (install it with
`pip install scikit-learn`; nothing else is downloaded): one row per image, 64 pixel values in
0..16 (row-major 8x8) and then the label 0..9. Writes, in the output folder (default: `data/digits`
next to this script's parent folder):

- `digits-images-idx3-ubyte`: magic 0x00000803, dims 1797, 8, 8 (big-endian u32), then u8 pixels
  `min(16 * v, 255)` for v in 0..16 (so 0..15 map to 0..240 in steps of 16, and 16 maps to 255);
- `digits-labels-idx1-ubyte`: magic 0x00000801, dim 1797, then the u8 labels.

Prints the number of images and the count of each class. Only the standard library is needed to
write the files; scikit-learn is imported only to find its data folder.
"""

import argparse
import gzip
import os
import struct
import sys


def digits_csv_path():
    import sklearn.datasets

    return os.path.join(os.path.dirname(sklearn.datasets.__file__), "data", "digits.csv.gz")


def read_rows(path):
    with gzip.open(path, "rt") as f:
        rows = [line.strip().split(",") for line in f if line.strip()]
    images, labels = [], []
    for i, row in enumerate(rows):
        if len(row) != 65:
            raise ValueError(f"{path}: row {i} has {len(row)} fields, expected 65")
        values = [int(v) for v in row]
        pixels, label = values[:64], values[64]
        if not all(0 <= v <= 16 for v in pixels) or not 0 <= label <= 9:
            raise ValueError(f"{path}: row {i} has a pixel outside 0..16 or a label outside 0..9")
        images.append(bytes(min(16 * v, 255) for v in pixels))
        labels.append(label)
    return images, labels


def write_idx(out_dir, images, labels):
    n = len(images)
    with open(os.path.join(out_dir, "digits-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x00000803, n, 8, 8))
        for image in images:
            f.write(image)
    with open(os.path.join(out_dir, "digits-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x00000801, n))
        f.write(bytes(labels))


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=None, help="digits.csv.gz (default: scikit-learn's copy)")
    parser.add_argument("--out", default=os.path.join(here, "..", "data", "digits"))
    args = parser.parse_args(argv)
    images, labels = read_rows(args.csv or digits_csv_path())
    os.makedirs(args.out, exist_ok=True)
    write_idx(args.out, images, labels)
    counts = [labels.count(c) for c in range(10)]
    print(f"{len(images)} images; class counts {counts}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
