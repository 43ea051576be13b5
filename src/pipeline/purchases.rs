//! Step 0's row contract: which purchase rows are valid, and how a valid
//! row is written for PostgreSQL's `COPY … FROM STDIN (FORMAT binary)`.
//!
//! Pure functions over one CSV record, so the rules can be tested one by one
//! and the loader stays a loop. Validation borrows every field from the
//! record (no allocation per field), and encoding appends to one buffer.
//!
//! Binary COPY spares the server all text parsing: integers, the timestamp
//! and the price arrive in their on-disk form. The server still applies the
//! column types' limits (`varchar(n)`, `numeric(8,3)`) as it would to text,
//! and the validator has already checked every one of them.

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

/// Checks one record against the contract. A `\r` ending the last field is
/// the CR of a CRLF line end and not part of the value.
pub fn validate(record: &csv::ByteRecord) -> Result<Purchase<'_>, Reason> {
    if record.len() != 8 {
        return Err(Reason::FieldCount(record.len()));
    }
    let field = |i: usize| -> Result<&str, Reason> {
        let column = INPUT_HEADER[i];
        let bytes = &record[i];
        let bytes = match bytes.strip_suffix(b"\r") {
            Some(trimmed) if i == 7 => trimmed,
            _ => bytes,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| Reason::NotUtf8(column))?;
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

/// The start of a binary COPY stream: signature, flags, header extension length.
pub const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The end of a binary COPY stream: a field count of -1.
pub const COPY_TRAILER: &[u8] = &(-1i16).to_be_bytes();

/// 2000-01-01 00:00:00, PostgreSQL's timestamp epoch.
fn pg_epoch() -> NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .expect("a valid date")
        .and_hms_opt(0, 0, 0)
        .expect("a valid time")
}

/// Appends `row` as one binary COPY tuple: a field count, then each field
/// as a 32-bit length (-1 for NULL) and the type's binary form.
pub fn encode(row: &Purchase<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(&(COLUMNS.len() as i16).to_be_bytes());
    text(out, Some(row.invoice_number));
    text(out, Some(row.stock_code));
    text(out, row.detail);
    int4(out, Some(row.quantity));
    // Validated dates lie in years 1000-9999: micros fit an i64 with room.
    let micros = (row.invoice_date - pg_epoch())
        .num_microseconds()
        .expect("a four-digit year fits in i64 microseconds");
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&micros.to_be_bytes());
    numeric(out, row.unit_price);
    int4(out, row.customer_id);
    text(out, row.country);
}

fn text(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => {
            // Validated fields hold at most 1000 characters.
            out.extend_from_slice(&(value.len() as i32).to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

fn int4(out: &mut Vec<u8>, value: Option<i32>) {
    match value {
        Some(value) => {
            out.extend_from_slice(&4i32.to_be_bytes());
            out.extend_from_slice(&value.to_be_bytes());
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

/// A price that [`is_price`] accepted, in `numeric`'s binary form: digit
/// count, weight (of the first base-10000 digit), sign, display scale, then
/// the base-10000 digits, with no leading or trailing zero digits.
fn numeric(out: &mut Vec<u8>, price: &str) {
    let negative = price.starts_with('-');
    let unsigned = price.strip_prefix(['+', '-']).unwrap_or(price);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    // At most 5 integer digits and 3 decimals: one 8-digit number, scaled
    // by 10^3, splits into base-10000 digits d0.d1 d2 (weight 1, 0, -1).
    let digits = |s: &str| s.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
    let scaled = digits(int) * 1000 + digits(frac) * 10u64.pow(3 - frac.len() as u32);
    let whole = scaled / 1000;
    let groups = [
        (whole / 10000) as i16,
        (whole % 10000) as i16,
        ((scaled % 1000) * 10) as i16,
    ];
    let mut weight = 1i16;
    let mut first = 0;
    while first < groups.len() && groups[first] == 0 {
        first += 1;
        weight -= 1;
    }
    let mut last = groups.len();
    while last > first && groups[last - 1] == 0 {
        last -= 1;
    }
    let kept = &groups[first..last];
    if kept.is_empty() {
        weight = 0;
    }
    let sign: u16 = if negative && !kept.is_empty() {
        0x4000
    } else {
        0
    };
    let len = 8 + 2 * kept.len();
    out.extend_from_slice(&(len as i32).to_be_bytes());
    out.extend_from_slice(&(kept.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(frac.len() as i16).to_be_bytes());
    for digit in kept {
        out.extend_from_slice(&digit.to_be_bytes());
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

    /// Splits one encoded tuple into its fields (`None` for NULL).
    fn fields(tuple: &[u8]) -> Vec<Option<Vec<u8>>> {
        let count = i16::from_be_bytes([tuple[0], tuple[1]]);
        let mut at = 2;
        let mut out = Vec::new();
        for _ in 0..count {
            let len = i32::from_be_bytes(tuple[at..at + 4].try_into().unwrap());
            at += 4;
            if len < 0 {
                out.push(None);
            } else {
                out.push(Some(tuple[at..at + len as usize].to_vec()));
                at += len as usize;
            }
        }
        assert_eq!(at, tuple.len(), "trailing bytes after the tuple");
        out
    }

    fn encoded(row: &csv::ByteRecord) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::new();
        encode(&validate(row).unwrap(), &mut out);
        fields(&out)
    }

    #[test]
    fn a_uci_row_is_valid() {
        let row = record(&VALID);
        let p = validate(&row).unwrap();
        assert_eq!(p.quantity, 6);
        assert_eq!(p.invoice_date.to_string(), "2010-12-01 08:26:00");
        assert_eq!(p.customer_id, Some(17850));
        let f = encoded(&row);
        assert_eq!(f.len(), 8);
        assert_eq!(f[0].as_deref(), Some(&b"536365"[..]));
        assert_eq!(
            f[2].as_deref(),
            Some(&b"WHITE HANGING HEART T-LIGHT HOLDER"[..])
        );
        assert_eq!(f[3].as_deref(), Some(&6i32.to_be_bytes()[..]));
        // 2010-12-01 08:26 is 344,507,160 s after PostgreSQL's epoch.
        assert_eq!(
            f[4].as_deref(),
            Some(&(344_507_160_000_000i64).to_be_bytes()[..])
        );
        assert_eq!(f[6].as_deref(), Some(&17850i32.to_be_bytes()[..]));
        assert_eq!(f[7].as_deref(), Some(&b"United Kingdom"[..]));
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
        let f = encoded(&row);
        assert_eq!((&f[2], &f[6], &f[7]), (&None, &None, &None));
    }

    /// `numeric`'s binary form: (ndigits, weight, sign, dscale, digits).
    fn numeric_parts(price: &str) -> (i16, i16, u16, i16, Vec<i16>) {
        let mut out = Vec::new();
        numeric(&mut out, price);
        let len = i32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 4);
        let word = |i: usize| [out[4 + 2 * i], out[5 + 2 * i]];
        let ndigits = i16::from_be_bytes(word(0));
        let digits = (0..ndigits as usize)
            .map(|d| i16::from_be_bytes(word(4 + d)))
            .collect();
        (
            ndigits,
            i16::from_be_bytes(word(1)),
            u16::from_be_bytes(word(2)),
            i16::from_be_bytes(word(3)),
            digits,
        )
    }

    #[test]
    fn prices_encode_as_postgres_numeric() {
        // Value = sum(digit[i] * 10000^(weight - i)); sign 0x4000 is negative.
        assert_eq!(numeric_parts("2.55"), (2, 0, 0, 2, vec![2, 5500]));
        assert_eq!(
            numeric_parts("-11062.06"),
            (3, 1, 0x4000, 2, vec![1, 1062, 600])
        );
        assert_eq!(
            numeric_parts("99999.999"),
            (3, 1, 0, 3, vec![9, 9999, 9990])
        );
        assert_eq!(numeric_parts("0.001"), (1, -1, 0, 3, vec![10]));
        assert_eq!(numeric_parts("+1"), (1, 0, 0, 0, vec![1]));
        assert_eq!(numeric_parts(".5"), (1, -1, 0, 1, vec![5000]));
        assert_eq!(numeric_parts("5."), (1, 0, 0, 0, vec![5]));
        assert_eq!(numeric_parts("10000"), (1, 1, 0, 0, vec![1]));
        assert_eq!(numeric_parts("00012.300"), (2, 0, 0, 3, vec![12, 3000]));
        // Zero has no digits and no sign, whatever its text.
        assert_eq!(numeric_parts("0"), (0, 0, 0, 0, vec![]));
        assert_eq!(numeric_parts("-0.000"), (0, 0, 0, 3, vec![]));
    }

    #[test]
    fn the_cr_of_a_crlf_line_end_is_not_part_of_the_last_value() {
        let mut fields = VALID;
        fields[7] = "United Kingdom\r";
        let row = record(&fields);
        assert_eq!(validate(&row).unwrap().country, Some("United Kingdom"));
        // Only the last field's: elsewhere a CR is the value's.
        fields[7] = "UK";
        fields[2] = "two\r";
        assert_eq!(validate(&record(&fields)).unwrap().detail, Some("two\r"));
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

    /// PostgreSQL reads a text timestamp with second 60 as the next minute;
    /// chrono accepts it as a leap second. Both must give the same instant.
    #[test]
    fn a_leap_second_is_the_next_minute_as_postgres_reads_it() {
        let micros = |date: &str| {
            let f = encoded(&with(4, date));
            i64::from_be_bytes(f[4].as_deref().unwrap().try_into().unwrap())
        };
        assert_eq!(micros("2011-01-02 08:26:60"), micros("2011-01-02 08:27:00"));
        assert_eq!(micros("2000-01-01 00:00:00"), 0);
        assert_eq!(micros("1999-12-31 23:59:59"), -1_000_000);
    }

    #[test]
    fn values_are_sent_verbatim_with_no_escaping() {
        let mut fields = VALID;
        fields[2] = "tab\there\nnew\\line\r";
        let f = encoded(&record(&fields));
        assert_eq!(f[2].as_deref(), Some(&b"tab\there\nnew\\line\r"[..]));
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
