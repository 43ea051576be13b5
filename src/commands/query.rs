//! `infra query`: SQL against the warehouse, as a table, CSV or JSON.

use std::io::Write;

use anyhow::Result;

use crate::backend::gcp::Gcp;
use crate::backend::local::Local;
use crate::backend::{Cell, QueryResult, RowSink};
use crate::cli::{Format, QueryArgs};
use crate::exit::UsageError;
use crate::process::Echo;
use crate::settings::{Settings, TargetKind};
use crate::ui;

/// Rows the table shows unless `--limit` says otherwise: its column widths
/// need every shown row at hand.
pub const TABLE_ROWS: u64 = 1000;

pub async fn query(settings: &Settings, args: &QueryArgs) -> Result<()> {
    match statements(&args.sql) {
        0 => return Err(UsageError("the query is empty: give one SQL statement".into()).into()),
        1 => {}
        n => {
            return Err(UsageError(format!(
                "`infra query` runs one statement, and this query has {n}: only the last one's result could be shown\nhint: run them one at a time"
            ))
            .into());
        }
    }
    let limit = match (args.limit, args.format) {
        (Some(limit), _) => Some(limit),
        (None, Format::Table) => Some(TABLE_ROWS),
        (None, _) => None,
    };
    let sink = Box::new(Writer::new(
        args.format,
        limit,
        std::io::BufWriter::new(super::out::stdout()),
    ));
    match settings.target {
        // Streamed: one DuckDB chunk at a time.
        TargetKind::Local => {
            Local::new(settings)
                .warehouse()
                .query_into(&args.sql, sink)
                .await
        }
        // BigQuery's answer is read whole (its pages), then written.
        TargetKind::Gcp => {
            let target = Gcp::load(settings)?.target(Echo::Quiet).await?;
            let mut result = target.warehouse.query(&args.sql).await?;
            pad_metric_decimals(&mut result);
            let mut sink = sink;
            result.feed(sink.as_mut())
        }
    }
}

/// Writes a result in one format as its rows come.
pub struct Writer<W: Write + Send> {
    format: Format,
    limit: Option<u64>,
    out: Option<W>,
    csv: Option<csv::Writer<W>>,
    columns: Vec<String>,
    /// Rows written (or, for the table, kept).
    rows: u64,
    /// Rows seen past the table's limit: counted, not shown.
    more: u64,
    table: Vec<Vec<String>>,
}

impl<W: Write + Send> Writer<W> {
    pub fn new(format: Format, limit: Option<u64>, out: W) -> Writer<W> {
        Writer {
            format,
            limit,
            out: Some(out),
            csv: None,
            columns: Vec::new(),
            rows: 0,
            more: 0,
            table: Vec::new(),
        }
    }

    fn out(&mut self) -> &mut W {
        self.out.as_mut().expect("the csv writer took it")
    }

    /// One row as a JSON object, its keys in column order (a JSON map type
    /// would sort them).
    fn object(&self, row: &[Option<Cell>]) -> Result<String> {
        let mut fields = Vec::with_capacity(row.len());
        for (name, cell) in self.columns.iter().zip(row) {
            fields.push(format!(
                "{}: {}",
                serde_json::to_string(name)?,
                serde_json::to_string(&json(cell.as_ref()))?
            ));
        }
        Ok(format!("{{{}}}", fields.join(", ")))
    }
}

impl<W: Write + Send> RowSink for Writer<W> {
    fn columns(&mut self, columns: &[String]) -> Result<()> {
        if matches!(self.format, Format::Json | Format::Jsonl)
            && let Some(name) = duplicate(columns)
        {
            return Err(UsageError(format!(
                "the result has two columns named `{name}`, and a JSON object can hold only one\nhint: name each column with `AS`, or use `--format csv`"
            ))
            .into());
        }
        self.columns = columns.to_vec();
        match self.format {
            Format::Csv => {
                let out = self.out.take().expect("columns come once");
                let mut csv = csv::Writer::from_writer(out);
                csv.write_record(columns)?;
                self.csv = Some(csv);
            }
            Format::Json => write!(self.out(), "[")?,
            Format::Jsonl | Format::Table => {}
        }
        Ok(())
    }

    fn row(&mut self, row: Vec<Option<Cell>>) -> Result<bool> {
        if self.limit.is_some_and(|limit| self.rows >= limit) {
            if self.format == Format::Table {
                // The table says how many rows it did not show.
                self.more += 1;
                return Ok(true);
            }
            return Ok(false);
        }
        self.rows += 1;
        match self.format {
            Format::Table => self.table.push(
                row.iter()
                    .map(|c| c.as_ref().map_or("NULL".into(), text))
                    .collect(),
            ),
            Format::Csv => self
                .csv
                .as_mut()
                .expect("columns came first")
                .write_record(row.iter().map(|c| c.as_ref().map_or(String::new(), text)))?,
            Format::Json => {
                let object = self.object(&row)?;
                let comma = if self.rows > 1 { "," } else { "" };
                write!(self.out(), "{comma}\n  {object}")?;
            }
            Format::Jsonl => {
                let object = self.object(&row)?;
                writeln!(self.out(), "{object}")?;
            }
        }
        Ok(true)
    }

    fn finish(&mut self) -> Result<()> {
        match self.format {
            Format::Table => {
                let table = ui::table(&self.columns, &self.table);
                let shown = self.rows;
                let more = self.more;
                let out = self.out();
                writeln!(out, "{table}")?;
                if more == 0 {
                    writeln!(out, "({shown} row{})", if shown == 1 { "" } else { "s" })?;
                } else {
                    writeln!(
                        out,
                        "(the first {shown} of {} rows: --limit shows more, --format csv or jsonl streams them all)",
                        shown + more
                    )?;
                }
            }
            Format::Csv => {
                if let Some(csv) = self.csv.as_mut() {
                    csv.flush()?;
                }
                return Ok(());
            }
            Format::Json => writeln!(self.out(), "\n]")?,
            Format::Jsonl => {}
        }
        self.out().flush()?;
        Ok(())
    }
}

/// How many statements `sql` holds: `;` outside quotes and comments ends
/// one, and a part with nothing but blanks and comments is none.
fn statements(sql: &str) -> usize {
    let mut count = 0;
    let mut content = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ';' => {
                count += usize::from(content);
                content = false;
            }
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '\'' | '"' => {
                content = true;
                // A doubled quote inside is two quoted runs back to back:
                // counting stays right.
                for inner in chars.by_ref() {
                    if inner == c {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {}
            _ => content = true,
        }
    }
    count + usize::from(content)
}

/// The first column name that appears twice.
fn duplicate(columns: &[String]) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    columns
        .iter()
        .find(|name| !seen.insert(name.as_str()))
        .map(String::as_str)
}

fn text(cell: &Cell) -> String {
    match cell {
        Cell::Int(i) => i.to_string(),
        Cell::Bool(b) => b.to_string(),
        Cell::Text(s) => s.clone(),
        Cell::Float(f) => f.to_string(),
    }
}

/// Integers that fit a JSON number exactly stay numbers; decimals stay
/// strings so no digit is lost to a float.
fn json(cell: Option<&Cell>) -> serde_json::Value {
    match cell {
        None => serde_json::Value::Null,
        Some(Cell::Int(i)) => match i64::try_from(*i) {
            Ok(i) => i.into(),
            Err(_) => i.to_string().into(),
        },
        Some(Cell::Bool(b)) => (*b).into(),
        Some(Cell::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        Some(Cell::Text(s)) => s.clone().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a whole `result` in `format`, as a stream would.
    fn write(result: &QueryResult, format: Format, out: &mut Vec<u8>) -> Result<()> {
        let mut writer = Writer::new(format, None, out);
        result.clone().feed(&mut writer)
    }

    fn result() -> QueryResult {
        QueryResult {
            columns: vec!["id".into(), "amount".into(), "note".into()],
            rows: vec![vec![
                Some(Cell::Int(7)),
                Some(Cell::Text("12345678901234567.891".into())),
                None,
            ]],
        }
    }

    #[test]
    fn csv_has_a_header_and_exact_decimals() {
        let mut out = Vec::new();
        write(&result(), Format::Csv, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id,amount,note\n7,12345678901234567.891,\n"
        );
    }

    #[test]
    fn jsonl_is_one_object_a_line_and_json_an_array() {
        let mut two = result();
        two.rows.push(two.rows[0].clone());
        let mut out = Vec::new();
        write(&two, Format::Jsonl, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["amount"], "12345678901234567.891");
        }
        let mut out = Vec::new();
        write(&two, Format::Json, &mut out).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value.as_array().unwrap().len(), 2);
        let mut out = Vec::new();
        write(
            &QueryResult {
                columns: vec!["a".into()],
                rows: vec![],
            },
            Format::Json,
            &mut out,
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[\n]\n");
    }

    /// The table keeps at most its limit of rows, and says how many it left out.
    #[test]
    fn the_table_stops_at_its_limit_and_counts_the_rest() {
        let rows = (0..5).map(|i| vec![Some(Cell::Int(i))]).collect();
        let result = QueryResult {
            columns: vec!["n".into()],
            rows,
        };
        let mut out = Vec::new();
        let mut writer = Writer::new(Format::Table, Some(2), &mut out);
        result.clone().feed(&mut writer).unwrap();
        drop(writer);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("the first 2 of 5 rows"), "{text}");
        assert!(!text.contains('3'), "{text}");
        let mut out = Vec::new();
        let mut writer = Writer::new(Format::Csv, Some(2), &mut out);
        result.feed(&mut writer).unwrap();
        drop(writer);
        assert_eq!(String::from_utf8(out).unwrap(), "n\n0\n1\n");
    }

    #[test]
    fn statements_are_counted_outside_quotes_and_comments() {
        for (sql, n) in [
            ("", 0),
            ("  ;; -- nothing\n /* at all; */", 0),
            ("select 1", 1),
            ("select 1;", 1),
            ("select ';' as a, \"x;y\" -- ;\n", 1),
            ("select 'it''s; fine'", 1),
            ("select 1; select 2", 2),
            ("select 1; /* c */ select 2;", 2),
        ] {
            assert_eq!(statements(sql), n, "{sql}");
        }
    }

    #[test]
    fn duplicate_column_names_are_found() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(duplicate(&names(&["a", "b", "a"])), Some("a"));
        assert_eq!(duplicate(&names(&["a", "b"])), None);
    }

    #[test]
    fn json_keeps_decimals_as_strings() {
        let mut out = Vec::new();
        write(&result(), Format::Json, &mut out).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value[0]["id"], 7);
        assert_eq!(value[0]["amount"], "12345678901234567.891");
        assert!(value[0]["note"].is_null());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.find("\"id\"") < text.find("\"amount\""),
            "column order lost: {text}"
        );
    }
}

/// BigQuery's query results carry no scale for a parameterized BIGNUMERIC
/// (googleapis/java-bigquery#1902) and drop trailing zeros, so a column
/// named like one of the metric's DECIMAL(38,3) columns is padded to scale
/// 3 here: the same text as the local target prints for the same rows.
fn pad_metric_decimals(result: &mut QueryResult) {
    let decimal = |name: &str| {
        crate::pipeline::warehouse::METRIC_COLUMNS
            .iter()
            .any(|c| c.name == name && c.kind == crate::backend::ColumnKind::Decimal38_3)
    };
    let columns: Vec<usize> = (0..result.columns.len())
        .filter(|&i| decimal(&result.columns[i]))
        .collect();
    for row in &mut result.rows {
        for &i in &columns {
            if let Some(Some(Cell::Text(text))) = row.get_mut(i) {
                *text = crate::backend::gcp::bigquery::pad_scale(text, 3);
            }
        }
    }
}

#[cfg(test)]
mod pad_tests {
    use super::*;

    #[test]
    fn metric_decimals_from_bigquery_are_padded_to_scale_3() {
        let mut result = QueryResult {
            columns: vec!["customer_id".into(), "amount_spent".into()],
            rows: vec![
                vec![Some(Cell::Int(1)), Some(Cell::Text("83.94".into()))],
                vec![Some(Cell::Int(2)), Some(Cell::Text("-7".into()))],
                vec![Some(Cell::Int(3)), None],
            ],
        };
        pad_metric_decimals(&mut result);
        assert_eq!(result.rows[0][1], Some(Cell::Text("83.940".into())));
        assert_eq!(result.rows[1][1], Some(Cell::Text("-7.000".into())));
        assert_eq!(result.rows[2][1], None);
        use crate::backend::gcp::bigquery::pad_scale;
        assert_eq!(pad_scale("1.2345", 3), "1.2345");
        assert_eq!(pad_scale("NaN", 3), "NaN");
    }
}
