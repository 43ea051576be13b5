//! `infra query`: SQL against the warehouse, as a table, CSV or JSON.

use std::io::Write;

use anyhow::Result;

use crate::backend::gcp::Gcp;
use crate::backend::local::Local;
use crate::backend::{Cell, QueryResult, Warehouse};
use crate::cli::{Format, QueryArgs};
use crate::process::Echo;
use crate::settings::{Settings, TargetKind};
use crate::ui;

pub async fn query(settings: &Settings, args: &QueryArgs) -> Result<()> {
    let result = match settings.target {
        TargetKind::Local => Local::new(settings).warehouse().query(&args.sql).await?,
        TargetKind::Gcp => {
            let target = Gcp::load(settings)?.target(Echo::Quiet).await?;
            target.warehouse.query(&args.sql).await?
        }
    };
    let mut out = std::io::stdout().lock();
    write(&result, args.format, &mut out)?;
    out.flush()?;
    Ok(())
}

/// Writes `result` in `format`.
pub fn write(result: &QueryResult, format: Format, out: &mut impl Write) -> Result<()> {
    match format {
        Format::Table => {
            let rows: Vec<Vec<String>> = result
                .rows
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|c| c.as_ref().map_or("NULL".into(), text))
                        .collect()
                })
                .collect();
            writeln!(out, "{}", ui::table(&result.columns, &rows))?;
            writeln!(
                out,
                "({} row{})",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            )?;
        }
        Format::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record(&result.columns)?;
            for row in &result.rows {
                csv.write_record(row.iter().map(|c| c.as_ref().map_or(String::new(), text)))?;
            }
            csv.flush()?;
        }
        Format::Json => {
            let rows: Vec<serde_json::Map<String, serde_json::Value>> = result
                .rows
                .iter()
                .map(|row| {
                    result
                        .columns
                        .iter()
                        .zip(row)
                        .map(|(name, cell)| (name.clone(), json(cell.as_ref())))
                        .collect()
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &rows)?;
            writeln!(out)?;
        }
    }
    Ok(())
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
    fn json_keeps_decimals_as_strings() {
        let mut out = Vec::new();
        write(&result(), Format::Json, &mut out).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value[0]["id"], 7);
        assert_eq!(value[0]["amount"], "12345678901234567.891");
        assert!(value[0]["note"].is_null());
    }
}
