//! Loaders on small files written here in each real format, and every malformed case: wrong magic,
//! truncated or padded data, label counts that differ from image counts, labels out of range, bad
//! headers and element types.

use crate::{assert_fails, scratch};
use dynlab::data::{
    load_cifar10, load_cifar100, load_idx, load_npy, load_safetensors_images, read_idx_images,
    read_idx_labels, Cifar100Labels, ImageLayout,
};
use dynlab_test_support::{device, device_test};
use std::path::Path;

/// An IDX file: magic, big-endian dims, data.
fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    b
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// Bytes `0, 1, …` (wrapping) of length `n`.
fn ramp(n: usize, mul: usize) -> Vec<u8> {
    (0..n).map(|i| (i * mul % 256) as u8).collect()
}

fn scaled(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&v| v as f32 / 255.0).collect()
}

#[device_test]
fn idx_files_load_as_nchw_in_unit_range() {
    let dir = scratch("idx");
    let pixels = ramp(3 * 2 * 4, 37);
    write(&dir.join("img"), &idx_bytes(0x803, &[3, 2, 4], &pixels));
    write(&dir.join("lab"), &idx_bytes(0x801, &[3], &[7, 0, 255]));
    let d = load_idx(dir.join("img"), dir.join("lab"), &device()).unwrap();
    assert_eq!(d.inputs.shape(), &[3, 1, 2, 4]);
    assert_eq!(d.inputs.to_vec::<f32>().unwrap(), scaled(&pixels));
    assert_eq!(d.targets.to_vec::<i32>().unwrap(), vec![7, 0, 255]);
    let images = read_idx_images(dir.join("img"), &device()).unwrap();
    assert_eq!(images.shape(), &[3, 1, 2, 4]);
    let labels = read_idx_labels(dir.join("lab"), &device()).unwrap();
    assert_eq!(labels.to_vec::<i32>().unwrap(), vec![7, 0, 255]);
}

#[device_test]
fn malformed_idx_files_are_errors_naming_the_loader() {
    let dir = scratch("idx-bad");
    let d = device();
    let pixels = ramp(2 * 3 * 3, 5);
    let good = idx_bytes(0x803, &[2, 3, 3], &pixels);
    let labels = idx_bytes(0x801, &[2], &[1, 2]);
    write(&dir.join("labels"), &labels);

    write(&dir.join("magic"), &idx_bytes(0x801, &[2, 3, 3], &pixels));
    let r = read_idx_images(dir.join("magic"), &d);
    assert_fails(
        r,
        "read_idx_images",
        &["magic number 0x00000801", "0x00000803"],
    );
    write(&dir.join("floats"), &idx_bytes(0xD03, &[2, 3, 3], &pixels));
    let r = read_idx_images(dir.join("floats"), &d);
    assert_fails(r, "read_idx_images", &["0x00000d03", "expected 0x00000803"]);

    write(&dir.join("short"), &good[..good.len() - 1]);
    let r = read_idx_images(dir.join("short"), &d);
    assert_fails(
        r,
        "read_idx_images",
        &["17 data bytes", "18 bytes", "2 × 3 × 3"],
    );
    let mut long = good.clone();
    long.push(0);
    write(&dir.join("long"), &long);
    assert_fails(
        read_idx_images(dir.join("long"), &d),
        "read_idx_images",
        &["19 data bytes"],
    );
    write(&dir.join("header"), &good[..9]);
    let r = read_idx_images(dir.join("header"), &d);
    assert_fails(
        r,
        "read_idx_images",
        &["a file of 9 bytes", "16-byte header"],
    );
    // A huge declared size is an error, not an allocation.
    write(
        &dir.join("huge"),
        &idx_bytes(0x803, &[u32::MAX, u32::MAX, 9], &pixels),
    );
    assert_fails(
        read_idx_images(dir.join("huge"), &d),
        "read_idx_images",
        &["truncated"],
    );

    write(&dir.join("lab-short"), &labels[..labels.len() - 1]);
    assert_fails(
        read_idx_labels(dir.join("lab-short"), &d),
        "read_idx_labels",
        &["1 data bytes"],
    );
    write(&dir.join("good"), &good);
    let r = read_idx_labels(dir.join("good"), &d);
    assert_fails(r, "read_idx_labels", &["magic number 0x00000803"]);

    write(&dir.join("three"), &idx_bytes(0x801, &[3], &[1, 2, 3]));
    let r = load_idx(dir.join("good"), dir.join("three"), &d);
    assert_fails(
        r,
        "load_idx",
        &["3 labels", "for 2 images", "one label per image"],
    );
    let r = load_idx(dir.join("missing"), dir.join("labels"), &d);
    assert_fails(r, "load_idx", &["missing"]);
}

/// CIFAR records: label bytes then 3072 pixel bytes.
fn cifar_records(labels: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
    let (mut file, mut pixels) = (Vec::new(), Vec::new());
    for (i, l) in labels.iter().enumerate() {
        file.extend(*l);
        let image = ramp(3072, 7 + i);
        file.extend(&image);
        pixels.extend(image);
    }
    (file, pixels)
}

#[device_test]
fn cifar_binaries_keep_channel_major_pixels_and_pick_labels() {
    let dir = scratch("cifar");
    let d = device();
    let (a, pa) = cifar_records(&[&[3], &[9]]);
    let (b, pb) = cifar_records(&[&[0]]);
    write(&dir.join("a.bin"), &a);
    write(&dir.join("b.bin"), &b);
    let data = load_cifar10(&[dir.join("a.bin"), dir.join("b.bin")], &d).unwrap();
    assert_eq!(data.inputs.shape(), &[3, 3, 32, 32]);
    assert_eq!(data.targets.to_vec::<i32>().unwrap(), vec![3, 9, 0]);
    let want: Vec<f32> = scaled(&[pa, pb].concat());
    assert_eq!(data.inputs.to_vec::<f32>().unwrap(), want);

    let (c, pc) = cifar_records(&[&[19, 99], &[4, 0]]);
    write(&dir.join("c.bin"), &c);
    let fine = load_cifar100(&[dir.join("c.bin")], Cifar100Labels::Fine, &d).unwrap();
    assert_eq!(fine.targets.to_vec::<i32>().unwrap(), vec![99, 0]);
    assert_eq!(fine.inputs.to_vec::<f32>().unwrap(), scaled(&pc));
    let coarse = load_cifar100(&[dir.join("c.bin")], Cifar100Labels::Coarse, &d).unwrap();
    assert_eq!(coarse.targets.to_vec::<i32>().unwrap(), vec![19, 4]);
}

#[device_test]
fn malformed_cifar_binaries_are_errors() {
    let dir = scratch("cifar-bad");
    let d = device();
    let (a, _) = cifar_records(&[&[3], &[9]]);
    write(&dir.join("short.bin"), &a[..a.len() - 1]);
    let r = load_cifar10(&[dir.join("short.bin")], &d);
    assert_fails(
        r,
        "load_cifar10",
        &["a file of 6145 bytes", "3073-byte records"],
    );
    write(&dir.join("empty.bin"), &[]);
    assert_fails(
        load_cifar10(&[dir.join("empty.bin")], &d),
        "load_cifar10",
        &["0 bytes"],
    );
    let (bad, _) = cifar_records(&[&[1], &[10]]);
    write(&dir.join("label.bin"), &bad);
    let r = load_cifar10(&[dir.join("label.bin")], &d);
    assert_fails(r, "load_cifar10", &["label 10 in record 1", "0..10"]);
    let (c, _) = cifar_records(&[&[20, 5]]);
    write(&dir.join("c.bin"), &c);
    let r = load_cifar100(&[dir.join("c.bin")], Cifar100Labels::Coarse, &d);
    assert_fails(r, "load_cifar100", &["label 20 in record 0", "0..20"]);
    assert!(load_cifar100(&[dir.join("c.bin")], Cifar100Labels::Fine, &d).is_ok());
    // A CIFAR-10 file read as CIFAR-100 has the wrong record size.
    let r = load_cifar100(&[dir.join("label.bin")], Cifar100Labels::Fine, &d);
    assert_fails(r, "load_cifar100", &["3074-byte records"]);
    let none: [&Path; 0] = [];
    assert_fails(load_cifar10(&none, &d), "load_cifar10", &["no files"]);
}

/// A `.npy` file (format `version`.0) holding `data` with `descr`, `fortran_order` and `shape`.
fn npy(descr: &str, fortran: bool, shape: &[usize], data: &[u8], version: u8) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let fortran = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {tuple}, }}");
    let prefix = if version == 1 { 10 } else { 12 };
    while (prefix + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY".to_vec();
    b.extend([version, 0]);
    match version {
        1 => b.extend((header.len() as u16).to_le_bytes()),
        _ => b.extend((header.len() as u32).to_le_bytes()),
    }
    b.extend(header.as_bytes());
    b.extend(data);
    b
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// NHWC bytes `[n, h, w, c]` to the NCHW order, on the host.
fn nhwc_to_nchw(x: &[u8], [_, h, w, c]: [usize; 4]) -> Vec<u8> {
    let mut out = vec![0; x.len()];
    for (i, o) in out.iter_mut().enumerate() {
        let (b, ch, y, xx) = (i / (c * h * w), i / (h * w) % c, i / w % h, i % w);
        *o = x[((b * h + y) * w + xx) * c + ch];
    }
    out
}

#[device_test]
fn npy_images_and_labels_load_in_either_layout() {
    let dir = scratch("npy");
    let d = device();
    let shape = [2, 3, 4, 3];
    let pixels = ramp(2 * 3 * 4 * 3, 11);
    write(&dir.join("x.npy"), &npy("|u1", false, &shape, &pixels, 1));
    write(
        &dir.join("y64.npy"),
        &npy("<i8", false, &[2], &i64_bytes(&[5, 0]), 1),
    );
    let data = load_npy(
        dir.join("x.npy"),
        dir.join("y64.npy"),
        ImageLayout::Nhwc,
        &d,
    )
    .unwrap();
    assert_eq!(data.inputs.shape(), &[2, 3, 3, 4]);
    assert_eq!(
        data.inputs.to_vec::<f32>().unwrap(),
        scaled(&nhwc_to_nchw(&pixels, shape))
    );
    assert_eq!(data.targets.to_vec::<i32>().unwrap(), vec![5, 0]);

    let y32: Vec<u8> = [7i32, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
    write(&dir.join("x2.npy"), &npy("|u1", false, &shape, &pixels, 2));
    write(&dir.join("y32.npy"), &npy("<i4", false, &[2], &y32, 2));
    let data = load_npy(
        dir.join("x2.npy"),
        dir.join("y32.npy"),
        ImageLayout::Nchw,
        &d,
    )
    .unwrap();
    assert_eq!(data.inputs.shape(), &[2, 3, 4, 3]);
    assert_eq!(data.inputs.to_vec::<f32>().unwrap(), scaled(&pixels));
    assert_eq!(data.targets.to_vec::<i32>().unwrap(), vec![7, 1]);
    write(&dir.join("y8.npy"), &npy("|u1", false, &[2], &[2, 3], 1));
    let data = load_npy(dir.join("x.npy"), dir.join("y8.npy"), ImageLayout::Nhwc, &d).unwrap();
    assert_eq!(data.targets.to_vec::<i32>().unwrap(), vec![2, 3]);
}

#[device_test]
fn malformed_npy_files_are_errors() {
    let dir = scratch("npy-bad");
    let d = device();
    let shape = [2, 2, 2, 1];
    let pixels = ramp(8, 3);
    write(&dir.join("x.npy"), &npy("|u1", false, &shape, &pixels, 1));
    write(
        &dir.join("y.npy"),
        &npy("<i8", false, &[2], &i64_bytes(&[1, 0]), 1),
    );
    let load = |x: &str, y: &str| load_npy(dir.join(x), dir.join(y), ImageLayout::Nhwc, &d);
    assert!(load("x.npy", "y.npy").is_ok());

    write(&dir.join("f.npy"), &npy("|u1", true, &shape, &pixels, 1));
    assert_fails(
        load("f.npy", "y.npy"),
        "load_npy",
        &["fortran_order: True", "C-order"],
    );
    write(
        &dir.join("be.npy"),
        &npy(">i8", false, &[2], &i64_bytes(&[1, 0]), 1),
    );
    assert_fails(
        load("x.npy", "be.npy"),
        "load_npy",
        &["dtype \">i8\"", "little-endian"],
    );
    write(
        &dir.join("f32.npy"),
        &npy("<f4", false, &shape, &[0; 32], 1),
    );
    assert_fails(load("f32.npy", "y.npy"), "load_npy", &["\"<f4\""]);
    let mut short = npy("|u1", false, &shape, &pixels, 1);
    short.pop();
    write(&dir.join("short.npy"), &short);
    assert_fails(
        load("short.npy", "y.npy"),
        "load_npy",
        &["7 data bytes", "8 bytes for shape"],
    );
    write(&dir.join("magic.npy"), b"\x93NUMPZ\x01\x00\x00\x00");
    assert_fails(load("magic.npy", "y.npy"), "load_npy", &["\\x93NUMPY"]);
    let mut cut = npy("|u1", false, &shape, &pixels, 1);
    cut.truncate(30);
    write(&dir.join("cut.npy"), &cut);
    assert_fails(
        load("cut.npy", "y.npy"),
        "load_npy",
        &["whole header inside the file"],
    );
    write(
        &dir.join("rank3.npy"),
        &npy("|u1", false, &[2, 2, 2], &pixels, 1),
    );
    assert_fails(load("rank3.npy", "y.npy"), "load_npy", &["rank 4"]);
    write(
        &dir.join("neg.npy"),
        &npy("<i8", false, &[2], &i64_bytes(&[1, -3]), 1),
    );
    assert_fails(load("x.npy", "neg.npy"), "load_npy", &["label -3 at row 1"]);
    let big = i64_bytes(&[1, 1 << 40]);
    write(&dir.join("big.npy"), &npy("<i8", false, &[2], &big, 1));
    assert_fails(
        load("x.npy", "big.npy"),
        "load_npy",
        &["label 1099511627776"],
    );
    write(
        &dir.join("three.npy"),
        &npy("<i8", false, &[3], &i64_bytes(&[1, 0, 1]), 1),
    );
    assert_fails(
        load("x.npy", "three.npy"),
        "load_npy",
        &["3 labels", "for 2 images"],
    );
    write(
        &dir.join("y2d.npy"),
        &npy("<i8", false, &[2, 1], &i64_bytes(&[1, 0]), 1),
    );
    assert_fails(load("x.npy", "y2d.npy"), "load_npy", &["rank 1"]);
}

/// A safetensors file of `(name, dtype, shape, data)` entries, written by hand.
fn safetensors(entries: &[(&str, &str, &[usize], &[u8])]) -> Vec<u8> {
    let (mut header, mut data) = (Vec::new(), Vec::<u8>::new());
    for (name, dtype, shape, bytes) in entries {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        header.push(format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            dims.join(","),
            data.len(),
            data.len() + bytes.len()
        ));
        data.extend(*bytes);
    }
    let mut json = format!("{{{}}}", header.join(","));
    while json.len() % 8 != 0 {
        json.push(' ');
    }
    let mut b = (json.len() as u64).to_le_bytes().to_vec();
    b.extend(json.as_bytes());
    b.extend(data);
    b
}

#[device_test]
fn safetensors_images_and_labels_load_and_bad_files_fail() {
    let dir = scratch("safetensors");
    let d = device();
    let shape = [2, 3, 2, 3];
    let pixels = ramp(36, 13);
    let labels = i64_bytes(&[4, 2]);
    let file = safetensors(&[
        ("images", "U8", &shape, &pixels),
        ("labels", "I64", &[2], &labels),
    ]);
    write(&dir.join("ok.safetensors"), &file);
    let data = load_safetensors_images(dir.join("ok.safetensors"), ImageLayout::Nhwc, &d).unwrap();
    assert_eq!(data.inputs.shape(), &[2, 3, 3, 2]);
    assert_eq!(
        data.inputs.to_vec::<f32>().unwrap(),
        scaled(&nhwc_to_nchw(&pixels, shape))
    );
    assert_eq!(data.targets.to_vec::<i32>().unwrap(), vec![4, 2]);

    let op = "load_safetensors_images";
    let load = |name: &str| load_safetensors_images(dir.join(name), ImageLayout::Nchw, &d);
    let no_labels = safetensors(&[("images", "U8", &shape, &pixels)]);
    write(&dir.join("nolabels.safetensors"), &no_labels);
    assert_fails(
        load("nolabels.safetensors"),
        op,
        &["a tensor named `labels`"],
    );
    let floats = safetensors(&[
        ("images", "F32", &[1, 3, 2, 3], &[0; 72]),
        ("labels", "U8", &[1], &[0]),
    ]);
    write(&dir.join("floats.safetensors"), &floats);
    assert_fails(load("floats.safetensors"), op, &["`images` of dtype F32"]);
    let neg = safetensors(&[
        ("images", "U8", &shape, &pixels),
        ("labels", "I32", &[2], &[1, 0, 0, 0, 255, 255, 255, 255]),
    ]);
    write(&dir.join("neg.safetensors"), &neg);
    assert_fails(load("neg.safetensors"), op, &["label -1 at row 1"]);
    write(&dir.join("cut.safetensors"), &file[..file.len() - 1]);
    assert_fails(load("cut.safetensors"), op, &["a safetensors file"]);
}
