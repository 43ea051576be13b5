//! A deterministic generator of realistic input data.
//!
//! It writes `user_purchase.csv` (the UCI Online Retail layout) and
//! `movie_review.csv` (`cid,review_str,id_review`) with the quirks real
//! exports have: a byte-order mark, CRLF line ends in the purchase file,
//! empty customer ids, cancellations, three-decimal prices, fields with
//! commas, quotes, newlines and non-ASCII text, "good" in many forms, and a
//! handful of invalid rows of every kind. The same seed and scale give
//! byte-identical files. Rows are written as they are made: memory stays
//! flat at any scale.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Rows in the real dataset.
pub const FULL_PURCHASES: u64 = 541_909;
pub const FULL_REVIEWS: u64 = 100_000;

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub purchases: u64,
    pub reviews: u64,
}

/// Invalid purchase rows, one of each kind the contract rejects, spread
/// through the file. Each is (fields, what is wrong).
pub fn invalid_purchases() -> Vec<Vec<String>> {
    let ok = [
        "536999",
        "22633",
        "HAND WARMER UNION JACK",
        "6",
        "12/1/2010 8:26",
        "1.85",
        "17850",
        "United Kingdom",
    ];
    let with = |i: usize, value: &str| {
        let mut row: Vec<String> = ok.iter().map(|s| s.to_string()).collect();
        row[i] = value.to_owned();
        row
    };
    vec![
        ok[..7].iter().map(|s| s.to_string()).collect(),
        ok.iter()
            .map(|s| s.to_string())
            .chain(["extra".into()])
            .collect(),
        with(0, ""),
        with(0, "C5369991234"),
        with(1, "STOCKCODE-TOO-LONG-123"),
        with(2, &"X".repeat(1001)),
        with(3, "six"),
        with(3, "2147483648"),
        with(4, "2/30/2011 10:00"),
        with(4, "2011/02/01 10:00"),
        with(5, "123456.5"),
        with(5, "1.2345"),
        with(6, "17850.0"),
        with(7, "The United Kingdom of Great Britain"),
    ]
}

/// Invalid review rows: a non-integer cid, an out-of-range cid, and too few
/// and too many fields.
pub fn invalid_reviews() -> Vec<Vec<String>> {
    vec![
        vec!["abc".into(), "a good movie".into(), "900001".into()],
        vec!["99999999999".into(), "good".into(), "900002".into()],
        vec!["12347".into(), "only two fields".into()],
        vec![
            "12347".into(),
            "four".into(),
            "900004".into(),
            "fields".into(),
        ],
    ]
}

const WORDS: &[&str] = &[
    "WHITE",
    "HANGING",
    "HEART",
    "T-LIGHT",
    "HOLDER",
    "METAL",
    "LANTERN",
    "CREAM",
    "CUPID",
    "HEARTS",
    "COAT",
    "HANGER",
    "KNITTED",
    "UNION",
    "FLAG",
    "HOT",
    "WATER",
    "BOTTLE",
    "RED",
    "WOOLLY",
    "HOTTIE",
    "SET",
    "OF",
    "6",
    "RETROSPOT",
    "GLASS",
    "STAR",
    "FROSTED",
    "VINTAGE",
    "JUMBO",
    "BAG",
    "PINK",
    "POLKADOT",
    "ALARM",
    "CLOCK",
    "BAKELIKE",
    "LUNCH",
    "BOX",
];

const ODD_DESCRIPTIONS: &[&str] = &[
    "SET 2, TEA TOWELS \"I LOVE LONDON\"",
    "CRÈME BRÛLÉE DISH, SMALL",
    "POSTAGE\nDOTCOM",
    "日本の 茶碗",
    "\"VINTAGE\" CARD, SAYS \"\"HELLO\"\"",
    "DOORMAT \u{2764} HOME SWEET HOME",
];

const COUNTRIES: &[&str] = &[
    "United Kingdom",
    "United Kingdom",
    "United Kingdom",
    "United Kingdom",
    "France",
    "Germany",
    "EIRE",
    "Spain",
    "Netherlands",
    "Belgium",
    "Switzerland",
    "Portugal",
    "Australia",
    "Channel Islands",
    "RSA",
    "Unspecified",
    "",
];

const REVIEW_POSITIVE: &[&str] = &[
    "Good movie.",
    "GOOD!",
    "not good, not bad",
    "the plot was good's best",
    "<br />good<br />",
    "very-good acting",
    "It was good, really \"good\".",
    "Bon film, très good.",
];

const REVIEW_NEGATIVE: &[&str] = &[
    "goods were delivered",
    "goodness me",
    "good_movie tag",
    "goodbye, cruel world",
    "good1 is a username",
    "Awful; a waste of time.",
    "Le film était très ennuyeux",
    "Slow start,\nbut the ending\nsurprised me",
    "",
];

const FILLER: &[&str] = &[
    "I watched this with my family",
    "the soundtrack",
    "the director",
    "acting",
    "honestly",
    "in the second half",
    "the effects",
    "a classic",
    "the cast",
    "on a rainy Sunday",
];

/// Writes both files into `dir`. `scale` 1.0 matches the real dataset.
pub fn write(dir: &Path, scale: f64, seed: u64) -> Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let purchases = ((FULL_PURCHASES as f64) * scale).round().max(1.0) as u64;
    let reviews = ((FULL_REVIEWS as f64) * scale).round().max(1.0) as u64;
    let mut rng = StdRng::seed_from_u64(seed);
    // About 4,372 customers in the real data; never fewer than 20.
    let customers = ((4372.0 * scale.sqrt()).round() as u32).max(20);
    let written_purchases = write_purchases(
        &dir.join("user_purchase.csv"),
        purchases,
        customers,
        &mut rng,
    )?;
    let written_reviews =
        write_reviews(&dir.join("movie_review.csv"), reviews, customers, &mut rng)?;
    Ok(Written {
        purchases: written_purchases,
        reviews: written_reviews,
    })
}

fn create(path: &Path, bom: bool) -> Result<BufWriter<File>> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    if bom {
        out.write_all(b"\xEF\xBB\xBF")?;
    }
    Ok(out)
}

/// Positions of the invalid rows: spread evenly, fixed by the row count.
fn invalid_at(total: u64, invalid: usize) -> Vec<u64> {
    (0..invalid as u64)
        .map(|i| (i + 1) * total / (invalid as u64 + 1))
        .collect()
}

fn write_purchases(path: &Path, rows: u64, customers: u32, rng: &mut StdRng) -> Result<u64> {
    let mut csv = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(create(path, true)?);
    csv.write_record(crate::pipeline::purchases::INPUT_HEADER)?;
    let invalid = invalid_purchases();
    let mut at = invalid_at(rows, invalid.len())
        .into_iter()
        .zip(invalid)
        .peekable();
    let mut invoice = 536_365u32;
    let mut written = 0;
    // 2010-12-01 08:00 onwards, a few minutes per invoice.
    let mut minutes: i64 = 0;
    for i in 0..rows {
        while let Some((_, row)) = at.next_if(|(pos, _)| *pos == i) {
            csv.write_record(&row)?;
            written += 1;
        }
        if rng.random_ratio(1, 8) {
            invoice += 1;
            minutes += rng.random_range(1..30);
        }
        let cancelled = rng.random_ratio(1, 50);
        let number = if cancelled {
            format!("C{invoice}")
        } else {
            invoice.to_string()
        };
        let stock = format!(
            "{}{}",
            rng.random_range(10_000..99_999),
            if rng.random_ratio(1, 4) { "A" } else { "" }
        );
        let description = if rng.random_ratio(1, 200) {
            ODD_DESCRIPTIONS[rng.random_range(0..ODD_DESCRIPTIONS.len())].to_owned()
        } else if rng.random_ratio(1, 400) {
            String::new()
        } else {
            (0..rng.random_range(2..6))
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let magnitude: i32 = if rng.random_ratio(1, 20) {
            rng.random_range(13..500)
        } else {
            rng.random_range(1..13)
        };
        let quantity = if cancelled { -magnitude } else { magnitude };
        let date = date(minutes, rng.random_ratio(1, 20));
        let price = if rng.random_ratio(1, 10) {
            format!(
                "{}.{:03}",
                rng.random_range(0..30),
                rng.random_range(0..1000)
            )
        } else if rng.random_ratio(1, 5000) {
            format!(
                "{}.{:02}",
                rng.random_range(1000..40_000),
                rng.random_range(0..100)
            )
        } else {
            format!(
                "{}.{:02}",
                rng.random_range(0..15),
                rng.random_range(0..100)
            )
        };
        let customer = if rng.random_ratio(1, 5) {
            String::new()
        } else {
            (12_346 + rng.random_range(0..customers)).to_string()
        };
        let country = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
        csv.write_record([
            number.as_str(),
            &stock,
            &description,
            &quantity.to_string(),
            &date,
            &price,
            &customer,
            country,
        ])?;
        written += 1;
    }
    for (_, row) in at {
        csv.write_record(&row)?;
        written += 1;
    }
    csv.flush()?;
    Ok(written)
}

/// `M/D/YYYY H:MM` as in the UCI file, or ISO now and then.
fn date(minutes: i64, iso: bool) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(2010, 12, 1)
        .expect("a valid date")
        .and_hms_opt(8, 0, 0)
        .expect("a valid time");
    let t = base + chrono::Duration::minutes(minutes % (365 * 24 * 60));
    if iso {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        t.format("%-m/%-d/%Y %-H:%M").to_string()
    }
}

fn write_reviews(path: &Path, rows: u64, customers: u32, rng: &mut StdRng) -> Result<u64> {
    let mut csv = csv::Writer::from_writer(create(path, true)?);
    csv.write_record(["cid", "review_str", "id_review"])?;
    let invalid = invalid_reviews();
    let mut at = invalid_at(rows, invalid.len())
        .into_iter()
        .zip(invalid)
        .peekable();
    let mut written = 0;
    for i in 0..rows {
        while let Some((_, row)) = at.next_if(|(pos, _)| *pos == i) {
            csv.write_record(&row)?;
            written += 1;
        }
        // Some reviewers never bought anything: ids past the purchase range.
        let cid = 12_346 + rng.random_range(0..customers + customers / 10);
        let core = if rng.random_ratio(2, 5) {
            REVIEW_POSITIVE[rng.random_range(0..REVIEW_POSITIVE.len())]
        } else {
            REVIEW_NEGATIVE[rng.random_range(0..REVIEW_NEGATIVE.len())]
        };
        let review = if core.is_empty() || rng.random_ratio(1, 3) {
            core.to_owned()
        } else {
            format!("{}, {core}", FILLER[rng.random_range(0..FILLER.len())])
        };
        csv.write_record([cid.to_string(), review, (i + 1).to_string()])?;
        written += 1;
    }
    for (_, row) in at {
        csv.write_record(&row)?;
        written += 1;
    }
    csv.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let wa = write(a.path(), 0.002, 7).unwrap();
        let wb = write(b.path(), 0.002, 7).unwrap();
        assert_eq!(wa, wb);
        for file in ["user_purchase.csv", "movie_review.csv"] {
            assert_eq!(
                std::fs::read(a.path().join(file)).unwrap(),
                std::fs::read(b.path().join(file)).unwrap()
            );
        }
        let c = tempfile::tempdir().unwrap();
        write(c.path(), 0.002, 8).unwrap();
        assert_ne!(
            std::fs::read(a.path().join("user_purchase.csv")).unwrap(),
            std::fs::read(c.path().join("user_purchase.csv")).unwrap()
        );
    }

    #[test]
    fn every_invalid_row_is_in_the_file_and_the_rest_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), 0.002, 1).unwrap();
        let expected =
            (FULL_PURCHASES as f64 * 0.002).round() as u64 + invalid_purchases().len() as u64;
        assert_eq!(written.purchases, expected);
        let bytes = std::fs::read(dir.path().join("user_purchase.csv")).unwrap();
        assert!(bytes.starts_with(b"\xEF\xBB\xBFInvoiceNo,"));
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(&bytes[3..]);
        let mut bad = 0;
        for record in reader.byte_records() {
            if crate::pipeline::purchases::validate(&record.unwrap()).is_err() {
                bad += 1;
            }
        }
        assert_eq!(bad, invalid_purchases().len());
    }
}
