//! A run's history: a table with one row per log point and typed, nullable columns. The schema is
//! declared once, by a row type made with [`history_row!`] (the struct's fields are the columns, in
//! order); metrics known only by name join as columns when first set, null in the rows before.
//! Written as CSV (floats in their shortest round-trip form, so a history read back is
//! bit-identical; null is an empty field) and as Parquet ([`crate::parquet`]).

use dynlab_models::{Record, Stateful};
use dynlab_runtime::{Error, Result};

/// The type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// Unsigned integers (epochs, steps).
    U64,
    /// Single-precision floats (metrics).
    F32,
    /// Double-precision floats (wall time).
    F64,
    /// UTF-8 text (task names).
    Text,
}

/// One cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An unsigned integer.
    U64(u64),
    /// A single-precision float.
    F32(f32),
    /// A double-precision float.
    F64(f64),
    /// Text.
    Text(String),
    /// No value.
    Null,
}

impl Value {
    /// The value as f64 (`None` for null and text).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::U64(v) => Some(*v as f64),
            Value::F32(v) => Some(*v as f64),
            Value::F64(v) => Some(*v),
            Value::Text(_) | Value::Null => None,
        }
    }

    fn column_type(&self) -> Option<ColumnType> {
        match self {
            Value::U64(_) => Some(ColumnType::U64),
            Value::F32(_) => Some(ColumnType::F32),
            Value::F64(_) => Some(ColumnType::F64),
            Value::Text(_) => Some(ColumnType::Text),
            Value::Null => None,
        }
    }
}

/// A Rust type that fills a column.
pub trait ColumnValue {
    /// The column's type.
    const TYPE: ColumnType;
    /// The cell.
    fn value(&self) -> Value;
}

impl ColumnValue for u64 {
    const TYPE: ColumnType = ColumnType::U64;
    fn value(&self) -> Value {
        Value::U64(*self)
    }
}

impl ColumnValue for f32 {
    const TYPE: ColumnType = ColumnType::F32;
    fn value(&self) -> Value {
        Value::F32(*self)
    }
}

impl ColumnValue for f64 {
    const TYPE: ColumnType = ColumnType::F64;
    fn value(&self) -> Value {
        Value::F64(*self)
    }
}

impl ColumnValue for String {
    const TYPE: ColumnType = ColumnType::Text;
    fn value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl<T: ColumnValue> ColumnValue for Option<T> {
    const TYPE: ColumnType = T::TYPE;
    fn value(&self) -> Value {
        self.as_ref().map_or(Value::Null, T::value)
    }
}

/// A typed row: its columns (name, type) in order, and its cells. Implemented by [`history_row!`].
pub trait Row {
    /// The columns this row fills.
    fn columns() -> Vec<(&'static str, ColumnType)>;
    /// The cells, in column order.
    fn values(&self) -> Vec<Value>;
}

/// Declares a row struct whose fields are history columns (types: `u64`, `f32`, `f64`, `String`,
/// or an `Option` of one for a nullable cell) and implements [`Row`] for it.
///
/// ```
/// dynlab_harness::history_row! {
///     /// One row per epoch.
///     pub struct EpochRow {
///         pub epoch: u64,
///         pub loss: f32,
///         pub acc: Option<f32>,
///     }
/// }
/// ```
#[macro_export]
macro_rules! history_row {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty),*
        }

        impl $crate::Row for $name {
            fn columns() -> Vec<(&'static str, $crate::ColumnType)> {
                vec![$((stringify!($field), <$ty as $crate::ColumnValue>::TYPE)),*]
            }

            fn values(&self) -> Vec<$crate::Value> {
                vec![$($crate::ColumnValue::value(&self.$field)),*]
            }
        }
    };
}

/// One column: a name, a type and a cell per row.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// The name.
    pub name: String,
    /// The type every non-null cell has.
    pub ty: ColumnType,
    /// The cells.
    pub values: Vec<Value>,
}

/// The table (see the module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    columns: Vec<Column>,
    rows: usize,
}

impl History {
    /// An empty history with the columns of row type `R`.
    pub fn of<R: Row>() -> History {
        let mut h = History::default();
        for (name, ty) in R::columns() {
            h.columns.push(Column {
                name: name.to_string(),
                ty,
                values: Vec::new(),
            });
        }
        h
    }

    /// A history of `columns` (equal lengths; every non-null cell of its column's type).
    pub fn from_columns(columns: Vec<Column>) -> Result<History> {
        let rows = columns.first().map_or(0, |c| c.values.len());
        for c in &columns {
            let wrong = c
                .values
                .iter()
                .find(|v| v.column_type().is_some_and(|t| t != c.ty));
            if c.values.len() != rows || wrong.is_some() {
                return Err(Error::value(
                    "History::from_columns",
                    format!("column `{}`: {} cells, {wrong:?}", c.name, c.values.len()),
                    format!("{rows} cells of type {:?} or null", c.ty),
                ));
            }
        }
        Ok(History { columns, rows })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The columns in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The column `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Appends a typed row; columns of `R` that are not in the history yet are added.
    pub fn push<R: Row>(&mut self, row: &R) -> Result<()> {
        let cells: Vec<(&str, Value)> = R::columns()
            .into_iter()
            .map(|(n, _)| n)
            .zip(row.values())
            .collect();
        self.push_cells(&cells)
    }

    /// Appends a row of named cells; absent columns are null, new names become columns.
    pub fn push_cells(&mut self, cells: &[(&str, Value)]) -> Result<()> {
        for column in &mut self.columns {
            column.values.push(Value::Null);
        }
        self.rows += 1;
        for (name, value) in cells {
            self.set(name, value.clone())?;
        }
        Ok(())
    }

    /// Sets cell `name` of the last row, adding the column (null in earlier rows) if it is new.
    pub fn set(&mut self, name: &str, value: Value) -> Result<()> {
        self.set_from(self.rows.saturating_sub(1), name, value)
    }

    /// Sets cell `name` of every row from `first` on (the rows of one unit of work, e.g. one per
    /// replica), adding the column (null in earlier rows) if it is new.
    pub fn set_from(&mut self, first: usize, name: &str, value: Value) -> Result<()> {
        if self.rows == 0 {
            return Err(Error::value(
                "History::set",
                format!("`{name}` in an empty history"),
                "a row pushed first",
            ));
        }
        let index = match self.columns.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                let Some(ty) = value.column_type() else {
                    return Ok(());
                };
                self.columns.push(Column {
                    name: name.to_string(),
                    ty,
                    values: vec![Value::Null; self.rows],
                });
                self.columns.len() - 1
            }
        };
        let column = &mut self.columns[index];
        if value.column_type().is_some_and(|t| t != column.ty) {
            return Err(Error::value(
                "History::set",
                format!("{value:?} for column `{name}`"),
                format!("a {:?} value or null", column.ty),
            ));
        }
        for cell in &mut column.values[first.min(self.rows - 1)..] {
            *cell = value.clone();
        }
        Ok(())
    }

    /// The cells of column `name` as f64 (`None` for null cells); `None` if there is no such
    /// numeric column.
    pub fn numbers(&self, name: &str) -> Option<Vec<Option<f64>>> {
        let column = self.column(name).filter(|c| c.ty != ColumnType::Text)?;
        Some(column.values.iter().map(Value::as_f64).collect())
    }

    /// The cell of column `name` in row `row`.
    pub fn cell(&self, name: &str, row: usize) -> Option<&Value> {
        self.column(name)?.values.get(row)
    }

    /// The cell of column `name` in the last row, as f64.
    pub fn last(&self, name: &str) -> Option<f64> {
        self.column(name)?.values.last()?.as_f64()
    }

    /// The first row whose cell in column `name` is at least `threshold`.
    pub fn first_row_reaching(&self, name: &str, threshold: f64) -> Option<usize> {
        let values = &self.column(name)?.values;
        values
            .iter()
            .position(|v| v.as_f64().is_some_and(|v| v >= threshold))
    }

    /// [`History::first_row_reaching`] for each value `k` in `0..count` of column `key`, among the
    /// rows whose `key` holds `k` (each replica's rows of a history of several), in one pass.
    pub fn first_rows_reaching_per(
        &self,
        name: &str,
        threshold: f64,
        key: &str,
        count: usize,
    ) -> Vec<Option<usize>> {
        let mut first = vec![None; count];
        let (Some(values), Some(keys)) = (self.column(name), self.column(key)) else {
            return first;
        };
        let mut missing = count;
        for r in 0..self.rows {
            if missing == 0 {
                break;
            }
            let Some(k) = keys.values[r].as_f64() else {
                continue;
            };
            let slot = (k >= 0.0 && k.fract() == 0.0 && k < count as f64).then_some(k as usize);
            if let Some(slot) = slot.filter(|&k| first[k].is_none()) {
                if values.values[r].as_f64().is_some_and(|v| v >= threshold) {
                    first[slot] = Some(r);
                    missing -= 1;
                }
            }
        }
        first
    }

    /// The rows whose column `key` holds `key_value`, as a history of their own (same columns).
    pub fn rows_where(&self, key: &str, key_value: f64) -> History {
        let keep: Vec<usize> = match self.column(key) {
            Some(keys) => (0..self.rows)
                .filter(|&r| keys.values[r].as_f64() == Some(key_value))
                .collect(),
            None => Vec::new(),
        };
        let columns = self
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                ty: c.ty,
                values: keep.iter().map(|&r| c.values[r].clone()).collect(),
            })
            .collect();
        History {
            columns,
            rows: keep.len(),
        }
    }

    /// The distinct values of column `key` in order of first appearance (the replicas of a
    /// history that has a `replica` column).
    pub fn distinct(&self, key: &str) -> Vec<f64> {
        let mut seen: Vec<f64> = Vec::new();
        for v in self.column(key).map_or(&[][..], |c| &c.values[..]) {
            if let Some(x) = v.as_f64() {
                if !seen.contains(&x) {
                    seen.push(x);
                }
            }
        }
        seen
    }

    /// Keeps the first `rows` rows.
    pub fn truncate(&mut self, rows: usize) {
        for c in &mut self.columns {
            c.values.truncate(rows);
        }
        self.rows = self.rows.min(rows);
    }

    /// The history as CSV: a header of column names, then one line per row.
    pub fn to_csv(&self) -> String {
        let mut s = self
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        s.push('\n');
        for r in 0..self.rows {
            let cells: Vec<String> = self
                .columns
                .iter()
                .map(|c| csv_cell(&c.values[r]))
                .collect();
            s.push_str(&cells.join(","));
            s.push('\n');
        }
        s
    }

    /// Reads CSV written by [`History::to_csv`] with the column types `types` (in column order).
    pub fn from_csv(text: &str, types: &[ColumnType]) -> Result<History> {
        let op = "History::from_csv";
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        if header.len() != types.len() {
            return Err(Error::value(
                op,
                format!("{} columns in the header", header.len()),
                format!("{} columns", types.len()),
            ));
        }
        let mut h = History {
            columns: header
                .iter()
                .zip(types)
                .map(|(name, &ty)| Column {
                    name: name.to_string(),
                    ty,
                    values: Vec::new(),
                })
                .collect(),
            rows: 0,
        };
        for (i, line) in lines.enumerate() {
            let cells = split_csv(line);
            if cells.len() != types.len() {
                return Err(Error::value(
                    op,
                    format!("line {}: `{line}`", i + 2),
                    format!("{} fields", types.len()),
                ));
            }
            for (column, cell) in h.columns.iter_mut().zip(cells) {
                let value = parse_cell(&cell, column.ty).ok_or_else(|| {
                    Error::value(
                        op,
                        format!("line {}: {cell:?} in column `{}`", i + 2, column.name),
                        format!("a {:?} value or an empty field", column.ty),
                    )
                })?;
                column.values.push(value);
            }
            h.rows += 1;
        }
        Ok(h)
    }

    /// Reads CSV of unknown column types (a history written by another program version, or read
    /// by a tool that has no row type): a column whose every non-empty field parses as a number is
    /// `F64`, any other is `Text`.
    pub fn from_csv_inferring_types(text: &str) -> Result<History> {
        let mut lines = text.lines();
        let width = lines.next().map_or(0, |h| split_csv(h).len());
        let mut numeric = vec![true; width];
        for line in lines {
            for (n, cell) in numeric.iter_mut().zip(split_csv(line)) {
                *n &= cell.is_none_or(|c| c.parse::<f64>().is_ok());
            }
        }
        let types: Vec<ColumnType> = numeric
            .into_iter()
            .map(|n| if n { ColumnType::F64 } else { ColumnType::Text })
            .collect();
        History::from_csv(text, &types)
    }

    /// The column types in order (what [`History::from_csv`] needs).
    pub fn types(&self) -> Vec<ColumnType> {
        self.columns.iter().map(|c| c.ty).collect()
    }
}

/// The history as CSV text and its column types (`u64,f32,…`), so a restored history is exact.
impl Stateful for History {
    fn save_state(&self) -> Result<Record> {
        let types: Vec<&str> = self.types().into_iter().map(type_name).collect();
        Ok(Record::default()
            .with_value("types", types.join(","))
            .with_value("csv", self.to_csv()))
    }

    fn load_state(&mut self, record: &Record) -> Result<()> {
        let names: String = record.value("types")?;
        let types = names
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|n| {
                type_from_name(n).ok_or_else(|| {
                    Error::value(
                        "History::load_state",
                        format!("type `{n}`"),
                        "u64, f32, f64 or text",
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        *self = History::from_csv(&record.value::<String>("csv")?, &types)?;
        Ok(())
    }
}

fn type_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::U64 => "u64",
        ColumnType::F32 => "f32",
        ColumnType::F64 => "f64",
        ColumnType::Text => "text",
    }
}

fn type_from_name(n: &str) -> Option<ColumnType> {
    Some(match n {
        "u64" => ColumnType::U64,
        "f32" => ColumnType::F32,
        "f64" => ColumnType::F64,
        "text" => ColumnType::Text,
        _ => return None,
    })
}

fn csv_cell(v: &Value) -> String {
    match v {
        Value::U64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Text(t) if t.contains([',', '"', '\n', '\r']) || t.is_empty() => {
            format!("\"{}\"", t.replace('"', "\"\""))
        }
        Value::Text(t) => t.clone(),
        Value::Null => String::new(),
    }
}

/// Splits one CSV line, honouring double-quoted fields; an empty unquoted field is `None`, a
/// quoted one `Some("")`.
fn split_csv(line: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let (mut cell, mut quoted, mut in_quotes) = (String::new(), false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            '"' if in_quotes => in_quotes = false,
            '"' if cell.is_empty() && !quoted => (in_quotes, quoted) = (true, true),
            ',' if !in_quotes => {
                out.push(finish_cell(std::mem::take(&mut cell), quoted));
                quoted = false;
            }
            c => cell.push(c),
        }
    }
    out.push(finish_cell(cell, quoted));
    out
}

fn finish_cell(cell: String, quoted: bool) -> Option<String> {
    (quoted || !cell.is_empty()).then_some(cell)
}

fn parse_cell(cell: &Option<String>, ty: ColumnType) -> Option<Value> {
    let Some(text) = cell else {
        return Some(Value::Null);
    };
    Some(match ty {
        ColumnType::U64 => Value::U64(text.parse().ok()?),
        ColumnType::F32 => Value::F32(text.parse().ok()?),
        ColumnType::F64 => Value::F64(text.parse().ok()?),
        ColumnType::Text => Value::Text(text.clone()),
    })
}
