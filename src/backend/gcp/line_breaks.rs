//! Rows whose text holds a line break, kept out of Cloud SQL's CSV import.
//!
//! Cloud SQL's CSV page says "CSV files must have one line for each row of
//! data fields" (cloud.google.com/sql/docs/postgres/import-export/
//! import-export-csv, "Before you begin"), and says nothing of what it does
//! with a quoted line break, which RFC 4180 allows and the local target
//! keeps. So step 0 never finds out: a row with `\n` or `\r` inside a
//! field goes into a SQL file of `INSERT`s instead, one statement per line,
//! with the break written as an escape (`E'…\n…'`), and that file is
//! imported into the same load table before the swap. Every other row stays
//! in the CSV, byte for byte.
//!
//! The input is [`RowFormat::Csv`](crate::backend::RowFormat::Csv): every
//! text value quoted, NULL an empty unquoted field, records ending in `\n`.

use std::io::Write;

use anyhow::{Result, bail};

/// Splits `chunk` (whole records): records without a line break inside a
/// field are appended to `csv` as they are, the others to `sql` as one
/// `INSERT` into `table` (`columns` in order) each. Returns how many went
/// to `sql`.
pub fn split(
    chunk: &[u8],
    table: &str,
    columns: &[String],
    csv: &mut Vec<u8>,
    sql: &mut impl Write,
) -> Result<u64> {
    let (mut start, mut quoted, mut broken, mut diverted) = (0, false, false, 0);
    for (i, &byte) in chunk.iter().enumerate() {
        match byte {
            // A doubled quote toggles twice: still inside.
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if quoted => broken = true,
            b'\n' => {
                let record = &chunk[start..=i];
                if broken {
                    insert(record, table, columns, sql)?;
                    diverted += 1;
                } else {
                    csv.extend_from_slice(record);
                }
                (start, broken) = (i + 1, false);
            }
            _ => {}
        }
    }
    if start != chunk.len() {
        bail!("a chunk of rows for Cloud SQL ends inside a record");
    }
    Ok(diverted)
}

/// One canonical CSV record (with its `\n`) as `INSERT INTO table (…)
/// VALUES (…);` on one line.
fn insert(record: &[u8], table: &str, columns: &[String], sql: &mut impl Write) -> Result<()> {
    let record = record.strip_suffix(b"\n").unwrap_or(record);
    write!(sql, "INSERT INTO {table} ({}) VALUES (", columns.join(", "))?;
    let mut rest = record;
    let mut fields = 0;
    loop {
        if fields > 0 {
            sql.write_all(b", ")?;
        }
        fields += 1;
        let after = if let Some(body) = rest.strip_prefix(b"\"") {
            let (value, after) = unquote(body)?;
            literal(&value, sql)?;
            after
        } else {
            let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
            if end == 0 {
                sql.write_all(b"NULL")?;
            } else {
                literal(&rest[..end], sql)?;
            }
            &rest[end..]
        };
        match after.split_first() {
            None => break,
            Some((b',', tail)) => rest = tail,
            Some(_) => bail!("a quoted field for Cloud SQL is followed by more than a comma"),
        }
    }
    if fields != columns.len() {
        bail!(
            "a row for Cloud SQL has {fields} fields, {table} has {} columns",
            columns.len()
        );
    }
    sql.write_all(b");\n")?;
    Ok(())
}

/// The value of a quoted field whose opening quote is gone, and what
/// follows its closing quote.
fn unquote(body: &[u8]) -> Result<(Vec<u8>, &[u8])> {
    let mut value = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'"' {
            if body.get(i + 1) == Some(&b'"') {
                value.push(b'"');
                i += 2;
                continue;
            }
            return Ok((value, &body[i + 1..]));
        }
        value.push(body[i]);
        i += 1;
    }
    bail!("a quoted field for Cloud SQL has no closing quote")
}

/// `value` as a PostgreSQL escape string: no raw line break reaches the
/// file. PostgreSQL casts the literal to the column's type.
fn literal(value: &[u8], sql: &mut impl Write) -> Result<()> {
    sql.write_all(b"E'")?;
    for &byte in value {
        match byte {
            b'\\' => sql.write_all(b"\\\\")?,
            b'\'' => sql.write_all(b"''")?,
            b'\n' => sql.write_all(b"\\n")?,
            b'\r' => sql.write_all(b"\\r")?,
            other => sql.write_all(&[other])?,
        }
    }
    sql.write_all(b"'")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<String> {
        ["a", "b", "c", "d"].map(String::from).to_vec()
    }

    fn run(chunk: &str) -> (String, String, u64) {
        let (mut csv, mut sql) = (Vec::new(), Vec::new());
        let n = split(chunk.as_bytes(), "s.t_load", &columns(), &mut csv, &mut sql).unwrap();
        (
            String::from_utf8(csv).unwrap(),
            String::from_utf8(sql).unwrap(),
            n,
        )
    }

    #[test]
    fn rows_without_line_breaks_stay_in_the_csv_byte_for_byte() {
        let chunk = "\"x\",\"a,\"\"b\"\"\",1,\n\"y\",,2,2010-12-01 08:26:00\n";
        assert_eq!(run(chunk), (chunk.to_owned(), String::new(), 0));
    }

    #[test]
    fn a_line_break_in_a_field_becomes_an_escaped_insert_on_one_line() {
        let chunk = concat!(
            "\"keep\",\"plain\",1,\n",
            "\"lf\",\"one\ntwo\",6,2010-12-01 08:26:00\n",
            "\"crlf\",\"it's \\ \"\"x\"\"\r\nend\",,\n",
        );
        let (csv, sql, n) = run(chunk);
        assert_eq!(csv, "\"keep\",\"plain\",1,\n");
        assert_eq!(n, 2);
        assert_eq!(
            sql,
            concat!(
                "INSERT INTO s.t_load (a, b, c, d) VALUES (E'lf', E'one\\ntwo', E'6', E'2010-12-01 08:26:00');\n",
                "INSERT INTO s.t_load (a, b, c, d) VALUES (E'crlf', E'it''s \\\\ \"x\"\\r\\nend', NULL, NULL);\n",
            )
        );
    }

    #[test]
    fn a_record_cut_in_two_or_of_the_wrong_width_is_refused() {
        let (mut csv, mut sql) = (Vec::new(), Vec::new());
        assert!(split(b"\"a\",\"b\nc", "t", &columns(), &mut csv, &mut sql).is_err());
        assert!(split(b"\"a\",\"b\nc\"\n", "t", &columns(), &mut csv, &mut sql).is_err());
    }
}
