//! A valid purchase row as canonical CSV, for databases that import CSV
//! files rather than a COPY stream (Cloud SQL's `instances.import`).
//!
//! RFC 4180, no header, `\n` line ends. Every text value is quoted, so an
//! empty unquoted field can only mean NULL, as PostgreSQL's CSV import
//! reads it; numbers and timestamps are written as the COPY text encoding
//! writes them, so both targets load the same values.

use std::io::Write as _;

use super::purchases::Purchase;

/// Appends `row` as one CSV line.
pub fn encode(row: &Purchase<'_>, out: &mut Vec<u8>) {
    quoted(out, Some(row.invoice_number));
    out.push(b',');
    quoted(out, Some(row.stock_code));
    out.push(b',');
    quoted(out, row.detail);
    let _ = write!(
        out,
        ",{},{},{},",
        row.quantity,
        row.invoice_date.format("%Y-%m-%d %H:%M:%S"),
        row.unit_price
    );
    if let Some(id) = row.customer_id {
        let _ = write!(out, "{id}");
    }
    out.push(b',');
    quoted(out, row.country);
    out.push(b'\n');
}

/// `"…"` with `"` doubled; nothing at all for NULL.
fn quoted(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(value) = value else { return };
    out.push(b'"');
    for byte in value.bytes() {
        if byte == b'"' {
            out.push(b'"');
        }
        out.push(byte);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::purchases::validate;

    fn line(fields: &[&str]) -> String {
        let record = csv::ByteRecord::from(fields.to_vec());
        let mut out = Vec::new();
        encode(&validate(&record).unwrap(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_is_quoted_and_null_is_an_empty_field() {
        assert_eq!(
            line(&[
                "536365",
                "85123A",
                "WHITE \"HEART\", T-LIGHT\nHOLDER",
                "6",
                "12/1/2010 8:26",
                "2.55",
                "",
                ""
            ]),
            "\"536365\",\"85123A\",\"WHITE \"\"HEART\"\", T-LIGHT\nHOLDER\",6,2010-12-01 08:26:00,2.55,,\n"
        );
        assert_eq!(
            line(&[
                "1",
                "2",
                "",
                "-1",
                "2011-01-02 08:26",
                ".5",
                "17850",
                "United Kingdom"
            ]),
            "\"1\",\"2\",,-1,2011-01-02 08:26:00,.5,17850,\"United Kingdom\"\n"
        );
    }

    #[test]
    fn a_csv_reader_gets_the_values_back() {
        let text = line(&[
            "5",
            "S",
            "a,b \"c\"\r\nd",
            "3",
            "1/2/2011 8:26",
            "1.250",
            "12",
            "France",
        ]);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[2], "a,b \"c\"\r\nd");
        assert_eq!(&record[4], "2011-01-02 08:26:00");
        assert_eq!(&record[7], "France");
    }
}
