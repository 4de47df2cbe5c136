//! A minimal Parquet writer for histories: one row group, one uncompressed data page (v1) per
//! column, every column OPTIONAL (definition levels RLE-encoded, bit width 1), values PLAIN-encoded;
//! types INT64 (annotated UINT_64), FLOAT, DOUBLE and BYTE_ARRAY (UTF8). DuckDB, pandas (pyarrow)
//! and Spark read it. Metadata is Thrift's compact protocol, written by hand (the format
//! specification: apache/parquet-format, `parquet.thrift`).
//!
//! Why not the `parquet` crate: with default features off it added 42 s to a clean build on the
//! project's 2-core machine for a file this simple.

use crate::history::{Column, ColumnType, History, Value};

const MAGIC: &[u8] = b"PAR1";

/// Thrift compact-protocol type ids.
mod ttype {
    pub const I32: u8 = 5;
    pub const I64: u8 = 6;
    pub const BINARY: u8 = 8;
    pub const LIST: u8 = 9;
    pub const STRUCT: u8 = 12;
}

/// Parquet enum values (parquet.thrift).
mod pq {
    pub const INT64: i32 = 2;
    pub const FLOAT: i32 = 4;
    pub const DOUBLE: i32 = 5;
    pub const BYTE_ARRAY: i32 = 6;
    pub const REQUIRED: i32 = 0;
    pub const OPTIONAL: i32 = 1;
    pub const UTF8: i32 = 0;
    pub const UINT_64: i32 = 14;
    pub const PLAIN: i32 = 0;
    pub const RLE: i32 = 3;
    pub const UNCOMPRESSED: i32 = 0;
    pub const DATA_PAGE: i32 = 0;
}

/// Thrift compact protocol output: structs are written field by field, each field id as a delta
/// from the previous one in the same struct.
#[derive(Default)]
struct Thrift {
    out: Vec<u8>,
    last_field: Vec<i16>,
}

impl Thrift {
    fn begin(&mut self) {
        self.last_field.push(0);
    }

    fn end(&mut self) {
        self.out.push(0);
        self.last_field.pop();
    }

    fn field(&mut self, id: i16, ty: u8) {
        let last = self.last_field.last_mut().expect("inside a struct");
        let delta = id - *last;
        *last = id;
        if (1..=15).contains(&delta) {
            self.out.push(((delta as u8) << 4) | ty);
        } else {
            self.out.push(ty);
            self.varint(zigzag(id as i64));
        }
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn i32(&mut self, id: i16, v: i32) {
        self.field(id, ttype::I32);
        self.varint(zigzag(v as i64));
    }

    fn i64(&mut self, id: i16, v: i64) {
        self.field(id, ttype::I64);
        self.varint(zigzag(v));
    }

    fn string(&mut self, id: i16, s: &str) {
        self.field(id, ttype::BINARY);
        self.bytes(s.as_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.out.extend_from_slice(b);
    }

    fn list_header(&mut self, id: i16, len: usize, elem: u8) {
        self.field(id, ttype::LIST);
        if len < 15 {
            self.out.push(((len as u8) << 4) | elem);
        } else {
            self.out.push(0xF0 | elem);
            self.varint(len as u64);
        }
    }

    fn struct_field(&mut self, id: i16) {
        self.field(id, ttype::STRUCT);
        self.begin();
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The Parquet physical type and its annotation.
fn physical(ty: ColumnType) -> (i32, Option<i32>) {
    match ty {
        ColumnType::U64 => (pq::INT64, Some(pq::UINT_64)),
        ColumnType::F32 => (pq::FLOAT, None),
        ColumnType::F64 => (pq::DOUBLE, None),
        ColumnType::Text => (pq::BYTE_ARRAY, Some(pq::UTF8)),
    }
}

/// The page body of one column: definition levels (4-byte length, then RLE runs of 0/1), then the
/// PLAIN values of the non-null cells.
fn page_body(column: &Column) -> Vec<u8> {
    let mut levels = Thrift::default();
    let defined: Vec<bool> = column.values.iter().map(|v| *v != Value::Null).collect();
    for run in defined.chunk_by(|a, b| a == b) {
        levels.varint((run.len() as u64) << 1);
        levels.out.push(u8::from(run[0]));
    }
    let mut body = (levels.out.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(&levels.out);
    for value in &column.values {
        match value {
            Value::U64(v) => body.extend_from_slice(&(*v as i64).to_le_bytes()),
            Value::F32(v) => body.extend_from_slice(&v.to_le_bytes()),
            Value::F64(v) => body.extend_from_slice(&v.to_le_bytes()),
            Value::Text(t) => {
                body.extend_from_slice(&(t.len() as u32).to_le_bytes());
                body.extend_from_slice(t.as_bytes());
            }
            Value::Null => {}
        }
    }
    body
}

fn page_header(rows: usize, body_len: usize) -> Vec<u8> {
    let mut t = Thrift::default();
    t.begin();
    t.i32(1, pq::DATA_PAGE);
    t.i32(2, body_len as i32);
    t.i32(3, body_len as i32);
    t.struct_field(5);
    t.i32(1, rows as i32);
    t.i32(2, pq::PLAIN);
    t.i32(3, pq::RLE);
    t.i32(4, pq::RLE);
    t.end();
    t.end();
    t.out
}

/// Where a column's chunk lies in the file.
struct Chunk {
    offset: usize,
    size: usize,
}

/// The file as bytes.
pub fn to_parquet(history: &History) -> Vec<u8> {
    let mut file = MAGIC.to_vec();
    let mut chunks = Vec::new();
    for column in history.columns() {
        let body = page_body(column);
        let header = page_header(history.rows(), body.len());
        chunks.push(Chunk {
            offset: file.len(),
            size: header.len() + body.len(),
        });
        file.extend_from_slice(&header);
        file.extend_from_slice(&body);
    }
    let footer = file_metadata(history, &chunks);
    file.extend_from_slice(&footer);
    file.extend_from_slice(&(footer.len() as u32).to_le_bytes());
    file.extend_from_slice(MAGIC);
    file
}

fn file_metadata(history: &History, chunks: &[Chunk]) -> Vec<u8> {
    let columns = history.columns();
    let rows = history.rows() as i64;
    let mut t = Thrift::default();
    t.begin();
    t.i32(1, 1);
    t.list_header(2, columns.len() + 1, ttype::STRUCT);
    t.begin();
    t.i32(3, pq::REQUIRED);
    t.string(4, "schema");
    t.i32(5, columns.len() as i32);
    t.end();
    for c in columns {
        let (physical, converted) = physical(c.ty);
        t.begin();
        t.i32(1, physical);
        t.i32(3, pq::OPTIONAL);
        t.string(4, &c.name);
        if let Some(converted) = converted {
            t.i32(6, converted);
        }
        t.end();
    }
    t.i64(3, rows);
    t.list_header(4, 1, ttype::STRUCT);
    t.begin();
    t.list_header(1, columns.len(), ttype::STRUCT);
    for (c, chunk) in columns.iter().zip(chunks) {
        t.begin();
        t.i64(2, chunk.offset as i64);
        t.struct_field(3);
        t.i32(1, physical(c.ty).0);
        t.list_header(2, 2, ttype::I32);
        t.varint(zigzag(pq::PLAIN as i64));
        t.varint(zigzag(pq::RLE as i64));
        t.list_header(3, 1, ttype::BINARY);
        t.bytes(c.name.as_bytes());
        t.i32(4, pq::UNCOMPRESSED);
        t.i64(5, rows);
        t.i64(6, chunk.size as i64);
        t.i64(7, chunk.size as i64);
        t.i64(9, chunk.offset as i64);
        t.end();
        t.end();
    }
    t.i64(2, chunks.iter().map(|c| c.size as i64).sum());
    t.i64(3, rows);
    t.end();
    t.string(6, concat!("dynlab ", env!("CARGO_PKG_VERSION")));
    t.end();
    t.out
}
