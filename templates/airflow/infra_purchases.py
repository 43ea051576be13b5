"""Step 0's row contract for the Airflow DAG: the same verdicts as infra's
loader (src/pipeline/load.rs and src/pipeline/purchases.rs), in Python.

`infra dags` copies this file beside the DAG. It needs nothing but the
standard library. tests/it/airflow_conformance.rs runs it and infra's loader
over the same corpus (tests/fuzz/corpus, the bad-input cases and mutations
of both) and requires identical output: the refusal of a file, the valid
rows as canonical CSV (the bytes Cloud SQL imports), the rejects file, and
the counts.

What it mirrors, exactly:
- the CSV reading of the Rust `csv` crate as infra configures it: records
  end at `\\n` only, blank lines are skipped, quotes are RFC 4180 with its
  lenient recovery (`"a"b` is `ab`, a quote inside an unquoted field is
  text, an unclosed quote runs to the end of the file), a UTF-8 BOM is
  dropped, and a record's line is the line after the previous record;
- a record longer than MAX_RECORD_BYTES (from the end of the previous one)
  refuses the whole file;
- `purchases::validate`, check by check, in the same order (so the first
  failing check is the reason given), including chrono's date parsing;
- `purchases_csv::encode` for valid rows and the csv crate's writer for the
  rejects file (`line,reason,record,record_base64`, quoted where needed;
  `record_base64` keeps the record's fields byte for byte, a CRLF's `\r`
  included, so nothing rejected is lost).
"""

import base64
import re

INPUT_HEADER = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]

MAX_RECORD_BYTES = 1 << 20

BOM = b"\xef\xbb\xbf"

# Rust's `str::trim_start` on ASCII text (Python's isspace also takes \x1c-\x1f).
_WHITESPACE = " \t\n\x0b\x0c\r"


class Refused(Exception):
    """The whole file cannot be loaded (infra fails step 0 the same way)."""


def records(data):
    """Yields (line, byte_span, fields) per record, as the csv crate reads
    them with `Terminator::Any(b'\\n')`, flexible, no headers."""
    pos = 0
    n = len(data)
    line = 1
    if data[:3] == BOM:
        pos = 3
    while True:
        start_line = line
        start = pos
        # StartRecord: skip terminators (blank lines).
        while pos < n and data[pos] == 0x0A:
            pos += 1
            line += 1
        if pos >= n:
            return
        fields = []
        field = bytearray()
        state = "start_field"
        while True:
            if pos >= n:
                fields.append(bytes(field))
                yield start_line, pos - start, fields
                return
            c = data[pos]
            pos += 1
            if c == 0x0A:
                line += 1
            if state == "start_field":
                if c == 0x22:
                    state = "quoted"
                elif c == 0x2C:
                    fields.append(bytes(field))
                    field = bytearray()
                elif c == 0x0A:
                    fields.append(bytes(field))
                    break
                else:
                    field.append(c)
                    state = "field"
            elif state == "field":
                if c == 0x2C:
                    fields.append(bytes(field))
                    field = bytearray()
                    state = "start_field"
                elif c == 0x0A:
                    fields.append(bytes(field))
                    break
                else:
                    field.append(c)
            elif state == "quoted":
                if c == 0x22:
                    state = "quote_in_quoted"
                else:
                    field.append(c)
            else:  # quote_in_quoted: a second quote, or the field's end
                if c == 0x22:
                    field.append(c)
                    state = "quoted"
                elif c == 0x2C:
                    fields.append(bytes(field))
                    field = bytearray()
                    state = "start_field"
                elif c == 0x0A:
                    fields.append(bytes(field))
                    break
                else:
                    field.append(c)
                    state = "field"
        yield start_line, pos - start, fields


def _strip_cr(fields):
    if fields and fields[-1].endswith(b"\r"):
        fields = fields[:-1] + [fields[-1][:-1]]
    return fields


class _Reject(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _field(fields, i):
    raw = fields[i]
    if i == 7 and raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Reject(f"{INPUT_HEADER[i]} is not valid UTF-8") from None
    if "\0" in text:
        raise _Reject(f"{INPUT_HEADER[i]} contains a NUL byte")
    return text


def _sized(fields, i, low, high):
    text = _field(fields, i)
    found = len(text)
    if found < low or found > high:
        column = INPUT_HEADER[i]
        if low == 0:
            raise _Reject(f"{column} has {found} characters, more than {high}")
        raise _Reject(f"{column} must have {low}-{high} characters, found {found}")
    return text


_INT = re.compile(r"[+-]?[0-9]+")


def _int32(text):
    if not _INT.fullmatch(text):
        return None
    value = int(text)
    if value < -(2**31) or value >= 2**31:
        return None
    return value


def _int(fields, i):
    value = _int32(_field(fields, i))
    if value is None:
        raise _Reject(f"{INPUT_HEADER[i]} is not a 32-bit integer")
    return value


# chrono's `parse_from_str` items: (kind, argument).
_SLASH = [("n", "month"), ("l", "/"), ("n", "day"), ("l", "/"), ("n", "year"), ("s", None),
          ("n", "hour"), ("l", ":"), ("n", "minute")]
_DASH_MINUTES = [("n", "year"), ("l", "-"), ("n", "month"), ("l", "-"), ("n", "day"), ("s", None),
                 ("n", "hour"), ("l", ":"), ("n", "minute")]
_DASH_SECONDS = _DASH_MINUTES + [("l", ":"), ("n", "second")]

_RANGES = {"month": (1, 12), "day": (1, 31), "hour": (0, 23), "minute": (0, 59), "second": (0, 60)}


def _number(s, low, high):
    """chrono's scan::number: at least `low`, at most `high` ASCII digits."""
    if len(s) < low:
        return None
    i = 0
    while i < len(s) and i < high and "0" <= s[i] <= "9":
        i += 1
    if i < low:
        return None
    return int(s[:i]), s[i:]


def _chrono(text, items):
    values = {}
    s = text
    for kind, arg in items:
        if kind == "l":
            if not s.startswith(arg):
                return None
            s = s[len(arg):]
        elif kind == "s":
            s = s.lstrip(_WHITESPACE)
        else:
            s = s.lstrip(_WHITESPACE)
            if arg == "year" and s[:1] in ("+", "-"):
                negative = s[0] == "-"
                scanned = _number(s[1:], 1, 1 << 62)
                if scanned is None:
                    return None
                value, s = scanned
                value = -value if negative else value
            else:
                scanned = _number(s, 1, 4 if arg == "year" else 2)
                if scanned is None:
                    return None
                value, s = scanned
            if arg in _RANGES:
                low, high = _RANGES[arg]
                if not low <= value <= high:
                    return None
            values[arg] = value
    if s:
        return None
    year, month, day = values["year"], values["month"], values["day"]
    if year < -262143 or year > 262142:
        return None
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    if day > days:
        return None
    return (year, month, day, values["hour"], values["minute"], values.get("second", 0))


def _well_formed_date(text):
    if " " not in text:
        return False
    date, time = text.split(" ", 1)
    if "/" in date:
        year_ok = len(date.rsplit("/", 1)[-1]) == 4
    else:
        year_ok = len(date.split("-", 1)[0]) == 4
    parts = time.split(":")
    hour_ok = 1 <= len(parts[0]) <= 2
    rest_ok = all(len(p) == 2 for p in parts[1:])
    return year_ok and hour_ok and rest_ok and text.isascii()


def parse_date(text):
    """`M/D/YYYY H:MM` or `YYYY-MM-DD HH:MM[:SS]`: (y, m, d, H, M, S) or None."""
    formats = [_SLASH] if "/" in text else [_DASH_SECONDS, _DASH_MINUTES]
    for items in formats:
        parsed = _chrono(text, items)
        if parsed is not None and _well_formed_date(text):
            return parsed
    return None


def is_price(text):
    unsigned = text[1:] if text[:1] in ("+", "-") else text
    integer, _, fraction = unsigned.partition(".")

    def digits(s):
        return all("0" <= c <= "9" for c in s)

    return (digits(integer) and digits(fraction) and len(integer) <= 5 and len(fraction) <= 3
            and not (integer == "" and fraction == ""))


def validate(fields):
    """The valid row's values, or raises _Reject with infra's reason."""
    if len(fields) != 8:
        raise _Reject(f"expected 8 fields, found {len(fields)}")
    invoice = _sized(fields, 0, 1, 10)
    stock = _sized(fields, 1, 1, 20)
    detail = _sized(fields, 2, 0, 1000) or None
    quantity = _int(fields, 3)
    date = parse_date(_field(fields, 4))
    if date is None:
        raise _Reject("InvoiceDate is not M/D/YYYY H:MM or YYYY-MM-DD HH:MM[:SS]")
    price = _field(fields, 5)
    if not is_price(price):
        raise _Reject(
            "UnitPrice does not fit numeric(8,3) (sign, at most 5 integer digits, at most 3 decimals)")
    customer = None if _field(fields, 6) == "" else _int(fields, 6)
    country = _sized(fields, 7, 0, 20) or None
    return invoice, stock, detail, quantity, date, price, customer, country


def _quoted(value):
    if value is None:
        return b""
    return b'"' + value.encode("utf-8").replace(b'"', b'""') + b'"'


def _year(year):
    return f"{year:04d}" if 0 <= year <= 9999 else f"{year:+05d}"


def encode(row):
    """One canonical CSV line, as purchases_csv::encode writes it."""
    invoice, stock, detail, quantity, date, price, customer, country = row
    y, mo, d, h, mi, s = date
    stamp = f"{_year(y)}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}"
    middle = f",{quantity},{stamp},{price},{'' if customer is None else customer},"
    return (_quoted(invoice) + b"," + _quoted(stock) + b"," + _quoted(detail)
            + middle.encode("ascii") + _quoted(country) + b"\n")


def _csv_field(value):
    """The csv crate's writer, QuoteStyle::Necessary."""
    if any(b in value for b in (b",", b'"', b"\r", b"\n")):
        return b'"' + value.replace(b'"', b'""') + b'"'
    return value


def _csv_record(fields):
    if len(fields) == 1 and fields[0] == b"":
        return b'""\n'
    return b",".join(_csv_field(f) for f in fields) + b"\n"


def load(data, source="the input"):
    """Validates a whole purchase CSV. Returns (read, rejected, rows_csv,
    rejects_csv); raises Refused for a file infra refuses."""
    if data[:3] == BOM:
        data = data[3:]
    reader = records(data)
    header = next(reader, None)
    if header is None:
        raise Refused(f"{source} is empty: expected a header row `{','.join(INPUT_HEADER)}`")
    _, span, fields = header
    fields = _strip_cr(fields)
    if fields != [h.encode() for h in INPUT_HEADER]:
        shown = ",".join(f.decode("utf-8", "replace") for f in fields)
        raise Refused(f"{source} has the header `{shown}`, expected `{','.join(INPUT_HEADER)}`")
    if span > MAX_RECORD_BYTES:
        raise Refused(f"{source}: a record longer than {MAX_RECORD_BYTES >> 20} MiB")
    rows = bytearray()
    rejects = bytearray(b"line,reason,record,record_base64\n")
    read = rejected = 0
    for line, span, fields in reader:
        if span > MAX_RECORD_BYTES:
            raise Refused(f"{source}: a record longer than {MAX_RECORD_BYTES >> 20} MiB")
        read += 1
        try:
            rows += encode(validate(fields))
        except _Reject as reject:
            rejected += 1
            exact = base64.b64encode(_csv_record(fields)[:-1])
            raw = _csv_record(_strip_cr(fields)).decode("utf-8", "replace").rstrip("\r\n")
            rejects += _csv_record([str(line).encode(), reject.reason.encode(), raw.encode(), exact])
    return read, rejected, bytes(rows), bytes(rejects)


def split_line_breaks(rows, table, columns):
    """Splits canonical CSV `rows` as the GCP run does for Cloud SQL
    (src/backend/gcp/line_breaks.rs): Cloud SQL's CSV import takes "one
    line for each row", so a row with `\\n` or `\\r` inside a field becomes
    one `INSERT INTO table (columns) VALUES (E'…');` line instead, the
    break escaped. Returns (csv_bytes, sql_bytes, rows_in_sql)."""
    csv_out, sql_out = bytearray(), bytearray()
    start, quoted, broken, diverted = 0, False, False, 0
    for i, byte in enumerate(rows):
        if byte == 0x22:  # a doubled quote toggles twice: still inside
            quoted = not quoted
        elif byte in (0x0A, 0x0D) and quoted:
            broken = True
        elif byte == 0x0A:
            record = rows[start:i + 1]
            if broken:
                sql_out += _insert(record, table, columns)
                diverted += 1
            else:
                csv_out += record
            start, broken = i + 1, False
    if start != len(rows):
        raise ValueError("the rows for Cloud SQL end inside a record")
    return bytes(csv_out), bytes(sql_out), diverted


def _insert(record, table, columns):
    """One canonical CSV record as an INSERT on one line."""
    record = record[:-1] if record.endswith(b"\n") else record
    values, rest = [], record
    while True:
        if rest.startswith(b'"'):
            value, i = bytearray(), 1
            while True:
                if i >= len(rest):
                    raise ValueError("a quoted field for Cloud SQL has no closing quote")
                if rest[i] == 0x22:
                    if rest[i + 1:i + 2] == b'"':
                        value.append(0x22)
                        i += 2
                        continue
                    break
                value.append(rest[i])
                i += 1
            values.append(_literal(bytes(value)))
            rest = rest[i + 1:]
        else:
            end = rest.find(b",")
            end = len(rest) if end < 0 else end
            values.append(_literal(rest[:end]) if end else b"NULL")
            rest = rest[end:]
        if not rest:
            break
        if not rest.startswith(b","):
            raise ValueError("a quoted field for Cloud SQL is followed by more than a comma")
        rest = rest[1:]
    if len(values) != len(columns):
        raise ValueError(f"a row for Cloud SQL has {len(values)} fields, {table} has {len(columns)} columns")
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES (".encode()
    return head + b", ".join(values) + b");\n"


def _literal(value):
    """A PostgreSQL escape string: no raw line break reaches the file."""
    escaped = (value.replace(b"\\", b"\\\\").replace(b"'", b"''")
               .replace(b"\n", b"\\n").replace(b"\r", b"\\r"))
    return b"E'" + escaped + b"'"


if __name__ == "__main__":
    # The conformance test's entry point: `python3 infra_purchases.py IN_DIR OUT_DIR`
    # writes NAME.verdict.json (and NAME.rows.csv, NAME.rejects.csv) per input.
    import json
    import pathlib
    import sys

    # Optional: LOAD_TABLE COLUMN,COLUMN,... also writes NAME.split.csv and
    # NAME.split.sql, the valid rows as split_line_breaks gives them.
    inputs, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    split = (sys.argv[3], sys.argv[4].split(",")) if len(sys.argv) > 4 else None
    for source in sorted(inputs.iterdir()):
        verdict = out / f"{source.name}.verdict.json"
        try:
            read, rejected, rows, rejects = load(source.read_bytes(), str(source))
        except Refused:
            verdict.write_text(json.dumps({"refused": True}))
        else:
            (out / f"{source.name}.rows.csv").write_bytes(rows)
            if split:
                csv_part, sql_part, _ = split_line_breaks(rows, *split)
                (out / f"{source.name}.split.csv").write_bytes(csv_part)
                (out / f"{source.name}.split.sql").write_bytes(sql_part)
            (out / f"{source.name}.rejects.csv").write_bytes(rejects)
            verdict.write_text(json.dumps({"read": read, "rejected": rejected}))
