//! Step 0's row contract: which purchase rows are valid, and how a valid
//! row is written for PostgreSQL's `COPY … FROM STDIN`.
//!
//! Pure functions over one CSV record, so the rules can be tested one by one
//! and the loader stays a loop.

use std::fmt;

use chrono::NaiveDateTime;

/// The header the input must have (UCI Online Retail).
pub const INPUT_HEADER: [&str; 8] = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
];

/// The table's columns, in the same order.
pub const COLUMNS: [&str; 8] = [
    "invoice_number",
    "stock_code",
    "detail",
    "quantity",
    "invoice_date",
    "unit_price",
    "customer_id",
    "country",
];

/// Why a row was rejected. The text is what the rejects file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    FieldCount(usize),
    NotUtf8(&'static str),
    NulByte(&'static str),
    Length {
        column: &'static str,
        min: usize,
        max: usize,
        found: usize,
    },
    NotInt32(&'static str),
    BadDate,
    BadPrice,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::FieldCount(n) => write!(f, "expected 8 fields, found {n}"),
            Reason::NotUtf8(column) => write!(f, "{column} is not valid UTF-8"),
            Reason::NulByte(column) => write!(f, "{column} contains a NUL byte"),
            Reason::Length {
                column,
                min,
                max,
                found,
            } => {
                if *min == 0 {
                    write!(f, "{column} has {found} characters, more than {max}")
                } else {
                    write!(
                        f,
                        "{column} must have {min}-{max} characters, found {found}"
                    )
                }
            }
            Reason::NotInt32(column) => write!(f, "{column} is not a 32-bit integer"),
            Reason::BadDate => {
                write!(
                    f,
                    "InvoiceDate is not M/D/YYYY H:MM or YYYY-MM-DD HH:MM[:SS]"
                )
            }
            Reason::BadPrice => write!(
                f,
                "UnitPrice does not fit numeric(8,3) (sign, at most 5 integer digits, at most 3 decimals)"
            ),
        }
    }
}

/// A valid row, borrowed from the record, ready to be encoded.
#[derive(Debug, PartialEq, Eq)]
pub struct Purchase<'a> {
    pub invoice_number: &'a str,
    pub stock_code: &'a str,
    pub detail: Option<&'a str>,
    pub quantity: i32,
    pub invoice_date: NaiveDateTime,
    pub unit_price: &'a str,
    pub customer_id: Option<i32>,
    pub country: Option<&'a str>,
}

/// Checks one record against the contract.
pub fn validate(record: &csv::ByteRecord) -> Result<Purchase<'_>, Reason> {
    if record.len() != 8 {
        return Err(Reason::FieldCount(record.len()));
    }
    let field = |i: usize| -> Result<&str, Reason> {
        let column = INPUT_HEADER[i];
        let text = std::str::from_utf8(&record[i]).map_err(|_| Reason::NotUtf8(column))?;
        if text.contains('\0') {
            return Err(Reason::NulByte(column));
        }
        Ok(text)
    };
    let sized = |i: usize, min: usize, max: usize| -> Result<&str, Reason> {
        let text = field(i)?;
        let found = text.chars().count();
        if found < min || found > max {
            return Err(Reason::Length {
                column: INPUT_HEADER[i],
                min,
                max,
                found,
            });
        }
        Ok(text)
    };
    let int = |i: usize| -> Result<i32, Reason> {
        field(i)?
            .parse::<i32>()
            .map_err(|_| Reason::NotInt32(INPUT_HEADER[i]))
    };

    let invoice_number = sized(0, 1, 10)?;
    let stock_code = sized(1, 1, 20)?;
    let detail = non_empty(sized(2, 0, 1000)?);
    let quantity = int(3)?;
    let invoice_date = parse_date(field(4)?).ok_or(Reason::BadDate)?;
    let unit_price = field(5)?;
    if !is_price(unit_price) {
        return Err(Reason::BadPrice);
    }
    let customer_id = match field(6)? {
        "" => None,
        _ => Some(int(6)?),
    };
    let country = non_empty(sized(7, 0, 20)?);
    Ok(Purchase {
        invoice_number,
        stock_code,
        detail,
        quantity,
        invoice_date,
        unit_price,
        customer_id,
        country,
    })
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// `M/D/YYYY H:MM` (the UCI file) or `YYYY-MM-DD HH:MM[:SS]`.
pub fn parse_date(text: &str) -> Option<NaiveDateTime> {
    let formats: &[&str] = if text.contains('/') {
        &["%m/%d/%Y %H:%M"]
    } else {
        &["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
    };
    formats.iter().find_map(|format| {
        let parsed = NaiveDateTime::parse_from_str(text, format).ok()?;
        well_formed_date(text).then_some(parsed)
    })
}

/// chrono accepts padding-free fields and years of any width; the contract
/// wants four-digit years and two-digit minutes.
fn well_formed_date(text: &str) -> bool {
    let Some((date, time)) = text.split_once(' ') else {
        return false;
    };
    let year_ok = if date.contains('/') {
        date.rsplit('/').next().is_some_and(|y| y.len() == 4)
    } else {
        date.split('-').next().is_some_and(|y| y.len() == 4)
    };
    let mut parts = time.split(':');
    let hour_ok = parts.next().is_some_and(|h| (1..=2).contains(&h.len()));
    let rest_ok = parts.all(|p| p.len() == 2);
    year_ok && hour_ok && rest_ok && text.is_ascii()
}

/// Optional sign, at most 5 integer digits, optionally a point and at most
/// 3 decimals; at least one digit.
pub fn is_price(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (int, frac) = match unsigned.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (unsigned, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    digits(int)
        && digits(frac)
        && int.len() <= 5
        && frac.len() <= 3
        && !(int.is_empty() && frac.is_empty())
}

/// Appends `row` in COPY text format: tab-separated, `\N` for NULL,
/// backslash escapes for the characters the format reserves.
pub fn encode(row: &Purchase<'_>, out: &mut Vec<u8>) {
    use std::io::Write;
    text(out, Some(row.invoice_number));
    out.push(b'\t');
    text(out, Some(row.stock_code));
    out.push(b'\t');
    text(out, row.detail);
    let _ = write!(
        out,
        "\t{}\t{}\t",
        row.quantity,
        row.invoice_date.format("%Y-%m-%d %H:%M:%S")
    );
    out.extend_from_slice(row.unit_price.as_bytes());
    out.push(b'\t');
    match row.customer_id {
        Some(id) => {
            let _ = write!(out, "{id}");
        }
        None => out.extend_from_slice(b"\\N"),
    }
    out.push(b'\t');
    text(out, row.country);
    out.push(b'\n');
}

fn text(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(value) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for byte in value.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[&str]) -> csv::ByteRecord {
        csv::ByteRecord::from(fields.to_vec())
    }

    const VALID: [&str; 8] = [
        "536365",
        "85123A",
        "WHITE HANGING HEART T-LIGHT HOLDER",
        "6",
        "12/1/2010 8:26",
        "2.55",
        "17850",
        "United Kingdom",
    ];

    fn with(i: usize, value: &str) -> csv::ByteRecord {
        let mut fields = VALID;
        fields[i] = value;
        record(&fields)
    }

    fn reason(i: usize, value: &str) -> String {
        validate(&with(i, value)).unwrap_err().to_string()
    }

    #[test]
    fn a_uci_row_is_valid() {
        let row = record(&VALID);
        let p = validate(&row).unwrap();
        assert_eq!(p.quantity, 6);
        assert_eq!(p.invoice_date.to_string(), "2010-12-01 08:26:00");
        assert_eq!(p.customer_id, Some(17850));
        let mut out = Vec::new();
        encode(&p, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "536365\t85123A\tWHITE HANGING HEART T-LIGHT HOLDER\t6\t2010-12-01 08:26:00\t2.55\t17850\tUnited Kingdom\n"
        );
    }

    #[test]
    fn empty_optional_fields_become_null() {
        let mut fields = VALID;
        fields[2] = "";
        fields[6] = "";
        fields[7] = "";
        let row = record(&fields);
        let p = validate(&row).unwrap();
        assert_eq!((p.detail, p.customer_id, p.country), (None, None, None));
        let mut out = Vec::new();
        encode(&p, &mut out);
        assert!(out.starts_with(b"536365\t85123A\t\\N\t"));
        assert!(out.ends_with(b"\t\\N\t\\N\n"));
    }

    #[test]
    fn field_count_is_checked() {
        let row = record(&VALID[..7]);
        assert_eq!(validate(&row).unwrap_err(), Reason::FieldCount(7));
        let mut nine = VALID.to_vec();
        nine.push("extra");
        assert_eq!(validate(&record(&nine)).unwrap_err(), Reason::FieldCount(9));
    }

    #[test]
    fn lengths_are_counted_in_characters() {
        assert!(validate(&with(0, "ÄÄÄÄÄÄÄÄÄÄ")).is_ok());
        assert_eq!(
            reason(0, ""),
            "InvoiceNo must have 1-10 characters, found 0"
        );
        assert_eq!(
            reason(0, "C5363651234"),
            "InvoiceNo must have 1-10 characters, found 11"
        );
        assert_eq!(
            reason(1, &"x".repeat(21)),
            "StockCode must have 1-20 characters, found 21"
        );
        assert!(validate(&with(2, &"é".repeat(1000))).is_ok());
        assert_eq!(
            reason(2, &"d".repeat(1001)),
            "Description has 1001 characters, more than 1000"
        );
        assert_eq!(
            reason(7, &"c".repeat(21)),
            "Country has 21 characters, more than 20"
        );
    }

    #[test]
    fn integers_must_fit_32_bits() {
        assert!(validate(&with(3, "-2147483648")).is_ok());
        assert_eq!(reason(3, "2147483648"), "Quantity is not a 32-bit integer");
        assert_eq!(reason(3, "1.5"), "Quantity is not a 32-bit integer");
        assert_eq!(reason(3, ""), "Quantity is not a 32-bit integer");
        assert_eq!(reason(6, "17850.0"), "CustomerID is not a 32-bit integer");
        assert_eq!(reason(6, "x"), "CustomerID is not a 32-bit integer");
    }

    #[test]
    fn dates_take_both_formats() {
        for ok in [
            "1/2/2011 8:26",
            "12/31/2011 23:59",
            "2011-01-02 08:26",
            "2011-01-02 08:26:59",
        ] {
            assert!(parse_date(ok).is_some(), "{ok}");
        }
        assert_eq!(
            parse_date("2011-01-02 08:26").unwrap().to_string(),
            "2011-01-02 08:26:00"
        );
        for bad in [
            "2/30/2011 8:26",
            "13/1/2011 8:26",
            "1/2/11 8:26",
            "1/2/2011 8:6",
            "1/2/2011 24:00",
            "2011-01-02",
            "2011-01-02T08:26",
            "",
            "yesterday",
        ] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn prices_must_fit_numeric_8_3() {
        for ok in ["2.55", "-11062.06", "+1", "99999.999", "0.001", ".5", "5."] {
            assert!(is_price(ok), "{ok}");
        }
        for bad in ["100000", "1.2345", "1e3", "", "-", ".", "NaN", "1,5", " 1"] {
            assert!(!is_price(bad), "{bad}");
        }
    }

    #[test]
    fn reserved_characters_are_escaped() {
        let mut fields = VALID;
        fields[2] = "tab\there\nnew\\line\r";
        let row = record(&fields);
        let mut out = Vec::new();
        encode(&validate(&row).unwrap(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\ttab\\there\\nnew\\\\line\\r\t"), "{text}");
    }

    #[test]
    fn bytes_postgres_cannot_store_are_rejected() {
        let mut row = record(&VALID);
        row = {
            let mut fields: Vec<Vec<u8>> = row.iter().map(<[u8]>::to_vec).collect();
            fields[2] = vec![0xff, 0xfe];
            csv::ByteRecord::from(fields)
        };
        assert_eq!(validate(&row).unwrap_err(), Reason::NotUtf8("Description"));
        assert_eq!(reason(7, "a\0b"), "Country contains a NUL byte");
    }
}
