//! A minimal Parquet writer for histories: one row group, one uncompressed data page (v1) per
//! column, every column OPTIONAL (definition levels RLE-encoded, bit width 1), values PLAIN-encoded;
//! types INT64 (annotated UINT_64), FLOAT, DOUBLE and BYTE_ARRAY (UTF8). DuckDB, pandas (pyarrow)
//! and Spark read it. Metadata is Thrift's compact protocol, written by hand (the format
//! specification: apache/parquet-format, `parquet.thrift`).
//!
//! [`from_parquet`] reads such files back (the run store's histories), and nothing else.
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

/// Thrift compact-protocol input: just enough to walk the file metadata and page headers this
/// module writes, skipping the fields it does not need.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// A Thrift value read from the metadata (`Struct` keeps its fields by id).
#[derive(Debug)]
enum TValue {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<TValue>),
    Struct(Vec<(i16, TValue)>),
    Other,
}

impl TValue {
    fn field(&self, id: i16) -> Option<&TValue> {
        match self {
            TValue::Struct(fields) => fields.iter().find(|f| f.0 == id).map(|f| &f.1),
            _ => None,
        }
    }

    fn int(&self, id: i16) -> Option<i64> {
        match self.field(id)? {
            TValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    fn list(&self, id: i16) -> &[TValue] {
        match self.field(id) {
            Some(TValue::List(items)) => items,
            _ => &[],
        }
    }
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn zigzag(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn value(&mut self, ty: u8) -> Option<TValue> {
        Some(match ty {
            1 | 2 => TValue::Int(i64::from(ty == 1)),
            3 => TValue::Int(self.byte()? as i8 as i64),
            4..=6 => TValue::Int(self.zigzag()?),
            7 => {
                self.at += 8;
                TValue::Other
            }
            8 => {
                let n = self.varint()? as usize;
                let b = self.bytes.get(self.at..self.at.checked_add(n)?)?.to_vec();
                self.at += n;
                TValue::Bytes(b)
            }
            9 | 10 => {
                let head = self.byte()?;
                let n = match head >> 4 {
                    15 => self.varint()? as usize,
                    n => n as usize,
                };
                let elem = head & 0x0f;
                // Every element takes at least a byte (a list's booleans are a byte each).
                if n > self.bytes.len().saturating_sub(self.at) {
                    return None;
                }
                let item = |r: &mut Self| match elem {
                    1 | 2 => r.byte().map(|b| TValue::Int(i64::from(b == 1))),
                    _ => r.value(elem),
                };
                let items = (0..n).map(|_| item(self)).collect::<Option<Vec<_>>>()?;
                TValue::List(items)
            }
            12 => self.structure()?,
            _ => return None,
        })
    }

    fn structure(&mut self) -> Option<TValue> {
        let (mut fields, mut last) = (Vec::new(), 0i16);
        loop {
            let head = self.byte()?;
            if head == 0 {
                return Some(TValue::Struct(fields));
            }
            let delta = (head >> 4) as i16;
            let id = if delta == 0 {
                self.zigzag()? as i16
            } else {
                last + delta
            };
            last = id;
            fields.push((id, self.value(head & 0x0f)?));
        }
    }
}

/// Reads a file written by [`to_parquet`] (one row group; uncompressed v1 data pages of PLAIN
/// values with RLE definition levels; INT64, FLOAT, DOUBLE, UTF8 byte arrays). `source` names the
/// file in errors; a file outside that subset is an error saying what it has.
pub fn from_parquet(bytes: &[u8], source: &str) -> dynlab_runtime::Result<History> {
    let bad = |what: &str| dynlab_runtime::Error::config(source, format!("Parquet: {what}"));
    let n = bytes.len();
    if n < 12 || &bytes[..4] != MAGIC || &bytes[n - 4..] != MAGIC {
        return Err(bad("no PAR1 magic at both ends"));
    }
    let footer_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    let start = (n - 8)
        .checked_sub(footer_len)
        .ok_or_else(|| bad("footer longer than the file"))?;
    let mut r = Reader {
        bytes: &bytes[..n - 8],
        at: start,
    };
    let meta = r
        .structure()
        .ok_or_else(|| bad("unreadable file metadata"))?;
    let rows = meta.int(3).ok_or_else(|| bad("no row count"))? as usize;
    let schema = meta.list(2);
    let groups = meta.list(4);
    let chunks = match groups {
        [] => &[][..],
        [group] => group.list(1),
        _ => return Err(bad("more than one row group (not written by dynlab)")),
    };
    let columns = schema.get(1..).unwrap_or_default();
    if columns.len() != chunks.len() {
        return Err(bad("a column without its chunk"));
    }
    let mut out = Vec::with_capacity(columns.len());
    for (element, chunk) in columns.iter().zip(chunks) {
        let name = match element.field(4) {
            Some(TValue::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => return Err(bad("a column without a name")),
        };
        let ty = match element.int(1).and_then(|t| i32::try_from(t).ok()) {
            Some(pq::INT64) => ColumnType::U64,
            Some(pq::FLOAT) => ColumnType::F32,
            Some(pq::DOUBLE) => ColumnType::F64,
            Some(pq::BYTE_ARRAY) => ColumnType::Text,
            t => return Err(bad(&format!("column `{name}` of physical type {t:?}"))),
        };
        let meta = chunk
            .field(3)
            .ok_or_else(|| bad("a chunk without metadata"))?;
        if meta.int(4) != Some(pq::UNCOMPRESSED as i64) {
            return Err(bad(&format!("column `{name}` is compressed")));
        }
        let offset = meta.int(9).ok_or_else(|| bad("no page offset"))? as usize;
        let values = read_page(bytes, offset, rows, ty).ok_or_else(|| {
            bad(&format!(
                "column `{name}`: a page this reader does not know (not written by dynlab)"
            ))
        })?;
        out.push(Column { name, ty, values });
    }
    History::from_columns(out).map_err(|e| bad(&e.to_string()))
}

/// The `rows` cells of the data page at `offset`.
fn read_page(bytes: &[u8], offset: usize, rows: usize, ty: ColumnType) -> Option<Vec<Value>> {
    let mut r = Reader { bytes, at: offset };
    let header = r.structure()?;
    let size = header.int(3)? as usize;
    let data = header.field(5)?;
    if header.int(1)? != pq::DATA_PAGE as i64
        || data.int(1)? as usize != rows
        || data.int(2)? != pq::PLAIN as i64
    {
        return None;
    }
    let body = bytes.get(r.at..r.at.checked_add(size)?)?;
    let levels_len = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
    let mut levels = Reader {
        bytes: body.get(4..4 + levels_len)?,
        at: 0,
    };
    let mut defined = Vec::new();
    while defined.len() < rows {
        let run = levels.varint()?;
        if run & 1 == 1 {
            return None; // a bit-packed run: not written here
        }
        let bit = levels.byte()?;
        let count = usize::try_from(run >> 1).ok()?.min(rows - defined.len());
        defined.extend(std::iter::repeat_n(bit == 1, count));
    }
    let mut values = Reader {
        bytes: body,
        at: 4 + levels_len,
    };
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = values.bytes.get(values.at..values.at.checked_add(n)?)?;
        values.at += n;
        Some(s)
    };
    defined
        .into_iter()
        .take(rows)
        .map(|d| {
            if !d {
                return Some(Value::Null);
            }
            Some(match ty {
                ColumnType::U64 => Value::U64(i64::from_le_bytes(take(8)?.try_into().ok()?) as u64),
                ColumnType::F32 => Value::F32(f32::from_le_bytes(take(4)?.try_into().ok()?)),
                ColumnType::F64 => Value::F64(f64::from_le_bytes(take(8)?.try_into().ok()?)),
                ColumnType::Text => {
                    let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
                    Value::Text(String::from_utf8(take(len)?.to_vec()).ok()?)
                }
            })
        })
        .collect()
}
