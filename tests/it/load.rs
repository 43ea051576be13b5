//! Steps 0 and 1 against a real PostgreSQL: validation, rejects, counts,
//! idempotence, and clear errors on bad input.

use sqlx::{Connection, PgConnection};

use crate::harness::Env;

const HEADER: &str =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country";

/// Valid rows with every quirk, then one invalid row of each kind, each
/// with the reason the rejects file must give.
fn purchases() -> (String, usize, Vec<&'static str>) {
    let valid = [
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom",
        "C536379,D,Discount,-1,12/1/2010 9:41,27.5,14527,United Kingdom",
        "536370,22728,\"ALARM CLOCK, \"\"BAKELIKE\"\" PINK\",24,2010-12-01 08:45,3.755,12583,France",
        "536371,22086,\"PAPER CHAIN KIT\nCHRISTMAS\",80,2010-12-01 09:00:00,-11062.06,,",
        "536372,22632,,6,12/1/2010 9:01,1.850,,Germany",
        "536373,21754,CRÈME BRÛLÉE 日本,1,12/31/2011 23:59,99999.999,2147483647,EIRE",
    ];
    let invalid: [(&str, &str); 12] = [
        (
            "536374,22633,TOO FEW,6,12/1/2010 9:02,1.85,17850",
            "expected 8 fields, found 7",
        ),
        (
            "536374,22633,TOO,MANY,6,12/1/2010 9:02,1.85,17850,UK",
            "expected 8 fields, found 9",
        ),
        (
            ",22633,NO INVOICE,6,12/1/2010 9:02,1.85,17850,UK",
            "InvoiceNo must have 1-10 characters, found 0",
        ),
        (
            "536374,123456789012345678901,LONG STOCK,6,12/1/2010 9:02,1.85,17850,UK",
            "StockCode must have 1-20 characters, found 21",
        ),
        (
            "536374,22633,WHAT,six,12/1/2010 9:02,1.85,17850,UK",
            "Quantity is not a 32-bit integer",
        ),
        (
            "536374,22633,BIG,2147483648,12/1/2010 9:02,1.85,17850,UK",
            "Quantity is not a 32-bit integer",
        ),
        (
            "536374,22633,WHEN,6,2/30/2011 9:02,1.85,17850,UK",
            "InvoiceDate is not",
        ),
        (
            "536374,22633,WHEN,6,01.12.2010 09:02,1.85,17850,UK",
            "InvoiceDate is not",
        ),
        (
            "536374,22633,PRICEY,6,12/1/2010 9:02,123456.5,17850,UK",
            "UnitPrice does not fit numeric(8,3)",
        ),
        (
            "536374,22633,PRECISE,6,12/1/2010 9:02,1.2345,17850,UK",
            "UnitPrice does not fit numeric(8,3)",
        ),
        (
            "536374,22633,WHO,6,12/1/2010 9:02,1.85,17850.0,UK",
            "CustomerID is not a 32-bit integer",
        ),
        (
            "536374,22633,WHERE,6,12/1/2010 9:02,1.85,17850,The United Kingdom of GB",
            "Country has 24 characters, more than 20",
        ),
    ];
    let mut text = format!("\u{feff}{HEADER}\r\n");
    for row in valid {
        text.push_str(row);
        text.push_str("\r\n");
    }
    let long_description = format!(
        "536374,22633,{},6,12/1/2010 9:02,1.85,17850,UK\r\n",
        "d".repeat(1001)
    );
    text.push_str(&long_description);
    let mut reasons = vec!["Description has 1001 characters, more than 1000"];
    for (row, reason) in invalid {
        text.push_str(row);
        text.push_str("\r\n");
        reasons.push(reason);
    }
    (text, valid.len(), reasons)
}

async fn table_dump(env: &Env) -> Vec<String> {
    let mut conn = PgConnection::connect_with(&env.db().await).await.unwrap();
    sqlx::query_scalar(
        "SELECT concat_ws('|', invoice_number, stock_code, coalesce(detail, '<null>'), quantity, \
         invoice_date, unit_price, coalesce(customer_id::text, '<null>'), coalesce(country, '<null>')) \
         FROM bootcampdb.user_purchase ORDER BY invoice_number, stock_code",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

fn data_dir(env: &Env, purchases: &str) -> String {
    env.write("data/user_purchase.csv", purchases);
    env.write(
        "data/movie_review.csv",
        "cid,review_str,id_review\n1,good,1\n",
    );
    env.path().join("data").display().to_string()
}

#[tokio::test]
async fn every_invalid_row_is_rejected_with_its_reason_and_nothing_is_lost() {
    let env = Env::new();
    env.infra(&["up"]).ok();
    let (text, valid, reasons) = purchases();
    let data = data_dir(&env, &text);
    env.infra(&["run", "--data", &data, "--only", "0"]).ok();

    let rows = table_dump(&env).await;
    assert_eq!(rows.len(), valid, "{rows:#?}");
    assert!(rows.contains(&"536370|22728|ALARM CLOCK, \"BAKELIKE\" PINK|24|2010-12-01 08:45:00|3.755|12583|France".to_owned()), "{rows:#?}");
    assert!(rows.contains(&"536371|22086|PAPER CHAIN KIT\nCHRISTMAS|80|2010-12-01 09:00:00|-11062.060|<null>|<null>".to_owned()), "{rows:#?}");
    assert!(
        rows.contains(&"536372|22632|<null>|6|2010-12-01 09:01:00|1.850|<null>|Germany".to_owned()),
        "{rows:#?}"
    );
    assert!(
        rows.iter().any(|r| r.starts_with(
            "536373|21754|CRÈME BRÛLÉE 日本|1|2011-12-31 23:59:00|99999.999|2147483647|EIRE"
        )),
        "{rows:#?}"
    );

    let rejects = std::fs::read(env.state().join("staging/rejects/user_purchase.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(&rejects[..]);
    assert_eq!(
        reader.headers().unwrap(),
        vec!["line", "reason", "record", "record_base64"]
    );
    let rejected: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rejected.len(), reasons.len());
    for (record, reason) in rejected.iter().zip(&reasons) {
        assert!(
            record[1].starts_with(reason),
            "expected `{reason}`, got `{}`",
            &record[1]
        );
    }
    // Line numbers count physical lines: the quoted newline in row 4 shifts the rest.
    assert_eq!(&rejected[0][0], "9");
    assert!(rejected[1][2].contains("TOO FEW"));

    let status = env.infra(&["status"]).ok().stdout;
    let line = status
        .lines()
        .find(|l| l.contains("0 load_purchases"))
        .unwrap_or_default();
    let numbers: Vec<String> = line
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let counts = [valid + reasons.len(), valid, reasons.len()].map(|n| n.to_string());
    assert!(
        numbers.ends_with(&counts),
        "read, loaded, rejected missing from:\n{status}"
    );

    // A second run replaces the rows: the same table, no duplicates. It
    // warns about the rejects, naming the file and the commonest reason
    // (issue 21: the count in the table was the only sign).
    let again = env.infra(&["run", "--data", &data, "--only", "0"]).ok();
    assert_eq!(table_dump(&env).await, rows);
    let warning = again
        .stderr
        .lines()
        .find(|l| l.contains("purchase rows were rejected"))
        .unwrap_or_else(|| panic!("no warning about the rejects:\n{}", again.stderr));
    assert!(
        warning.contains(&format!("{} of {}", reasons.len(), valid + reasons.len()))
            && warning.contains("2 × Quantity is not a 32-bit integer")
            && warning.contains("staging/rejects/user_purchase.csv"),
        "{warning}"
    );

    // Above `run.max_rejected` (a count, then a fraction) step 0 fails
    // after writing the rejects, and the previous table stays (issue 21).
    let other = text.replace("536365,85123A", "536399,85123A");
    let other_data = data_dir(&env, &other);
    for limit in ["12", "0.5"] {
        std::fs::remove_file(env.state().join("staging/rejects/user_purchase.csv")).unwrap();
        let out = env
            .command(&["run", "--data", &other_data, "--only", "0"])
            .env("INFRA_RUN_MAX_REJECTED", limit)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{limit}: {stderr}");
        assert!(
            stderr.contains("more than run.max_rejected allows")
                && stderr.contains("the previous table is untouched"),
            "{limit}: {stderr}"
        );
        assert_eq!(table_dump(&env).await, rows, "{limit}: the table changed");
        assert!(
            env.state()
                .join("staging/rejects/user_purchase.csv")
                .is_file(),
            "{limit}: the rejects were not written"
        );
    }
    // At the limit it loads.
    let out = env
        .command(&["run", "--data", &other_data, "--only", "0"])
        .env("INFRA_RUN_MAX_REJECTED", "13")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table_dump(&env)
            .await
            .iter()
            .any(|r| r.starts_with("536399|"))
    );
    env.infra(&["run", "--data", &data, "--only", "0"]).ok();

    // Step 1 dumps exactly the table, with the table's column names.
    env.infra(&["run", "--only", "1"]).ok();
    let dump = std::fs::read(env.state().join("staging/user_purchase.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(&dump[..]);
    assert_eq!(
        reader.headers().unwrap(),
        vec![
            "invoice_number",
            "stock_code",
            "detail",
            "quantity",
            "invoice_date",
            "unit_price",
            "customer_id",
            "country"
        ]
    );
    let dumped: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(dumped.len(), valid);
    assert!(
        dumped
            .iter()
            .any(|r| &r[2] == "PAPER CHAIN KIT\nCHRISTMAS" && &r[5] == "-11062.060")
    );
}

/// Every bad input of issue 13 fails before anything is copied or any step
/// starts: a one-line error naming the file, a hint that says to fix it and
/// rerun with `--data`, the previous raw data and table untouched, and no
/// run recorded.
#[tokio::test]
async fn bad_inputs_fail_in_one_line_before_anything_is_copied() {
    let env = Env::new();
    env.infra(&["up"]).ok();
    let (good_purchases, valid, _) = purchases();
    let good_reviews = "cid,review_str,id_review\n1,good,1\n";
    let data = data_dir(&env, &good_purchases);
    env.infra(&["run", "--data", &data, "--only", "0"]).ok();
    let before = table_dump(&env).await;
    assert_eq!(before.len(), valid);
    let raw = |name: &str| std::fs::read(env.state().join("raw").join(name)).unwrap();
    let raw_before = (raw("user_purchase.csv"), raw("movie_review.csv"));
    let runs = || std::fs::read_dir(env.state().join("runs")).unwrap().count();
    let runs_before = runs();

    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let long_line = vec![b'x'; 100 * 1024];
    let header_only = format!("{HEADER}\n");
    let cases: [(&str, &[u8], &[u8], &str); 10] = [
        (
            "empty purchases",
            b"",
            good_reviews.as_bytes(),
            "user_purchase.csv is empty",
        ),
        (
            "blank purchases",
            b"\n\n",
            good_reviews.as_bytes(),
            "user_purchase.csv is empty",
        ),
        (
            "header-only purchases",
            header_only.as_bytes(),
            good_reviews.as_bytes(),
            "user_purchase.csv has a header but no rows",
        ),
        (
            "binary purchases",
            &garbage,
            good_reviews.as_bytes(),
            "user_purchase.csv has the header `",
        ),
        (
            "wrong purchase header",
            b"Invoice,Stock\n1,2\n",
            good_reviews.as_bytes(),
            "user_purchase.csv has the header `Invoice,Stock`",
        ),
        (
            "a 100 KiB first line",
            &long_line,
            good_reviews.as_bytes(),
            "its first line is longer than 64 KiB",
        ),
        (
            "zero-byte reviews",
            good_purchases.as_bytes(),
            b"",
            "movie_review.csv is empty",
        ),
        (
            "header-only reviews",
            good_purchases.as_bytes(),
            b"cid,review_str,id_review\r\n",
            "movie_review.csv has a header but no rows",
        ),
        (
            "wrong review header",
            good_purchases.as_bytes(),
            b"id,text\n1,good\n",
            "movie_review.csv has the header `id,text`",
        ),
        (
            "binary reviews",
            good_purchases.as_bytes(),
            &garbage,
            "movie_review.csv has the header `",
        ),
    ];
    for (what, purchases, reviews, want) in cases {
        let dir = env.path().join("bad");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("user_purchase.csv"), purchases).unwrap();
        std::fs::write(dir.join("movie_review.csv"), reviews).unwrap();
        let out = env
            .infra(&["run", "--data", &dir.display().to_string()])
            .fails(1);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "{what}: not one error and one hint:\n{}",
            out.stderr
        );
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(want),
            "{what}:\n{}",
            out.stderr
        );
        assert!(
            lines[1].contains("fix the file, then rerun `infra run --data DIR`"),
            "{what}:\n{}",
            out.stderr
        );
        assert_eq!(
            (raw("user_purchase.csv"), raw("movie_review.csv")),
            raw_before,
            "{what}: the raw data was replaced"
        );
        assert_eq!(table_dump(&env).await, before, "{what}: the table changed");
        assert_eq!(runs(), runs_before, "{what}: a run was recorded");
    }

    // `--data` must name a directory holding both files.
    let file = env
        .path()
        .join("data/user_purchase.csv")
        .display()
        .to_string();
    let out = env.infra(&["run", "--data", &file]).fails(1);
    assert!(
        out.stderr.contains("--data takes a directory"),
        "{}",
        out.stderr
    );
    let empty_dir = env.path().join("nothing");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let out = env
        .infra(&["run", "--data", &empty_dir.display().to_string()])
        .fails(1);
    assert!(
        out.stderr.contains("missing input file(s)")
            && out.stderr.contains("`infra sample --out sample-data`"),
        "{}",
        out.stderr
    );
    // --data with a run that does not start at step 0 would mix inputs.
    let out = env.infra(&["run", "--data", &data, "--from", "2"]).fails(2);
    assert!(
        out.stderr.contains("must start at step 0"),
        "{}",
        out.stderr
    );

    // A 2 GB line after a good head (a sparse file: nothing is written but
    // the header) passes the head check, then the loader refuses it after
    // 1 MiB, leaving the table as it was.
    let dir = env.path().join("huge");
    std::fs::create_dir_all(&dir).unwrap();
    let huge = dir.join("user_purchase.csv");
    std::fs::write(&huge, format!("{HEADER}\n536365,")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    std::fs::write(dir.join("movie_review.csv"), good_reviews).unwrap();
    let out = env
        .infra(&["run", "--data", &dir.display().to_string(), "--only", "0"])
        .fails(1);
    assert!(
        out.stderr.contains("a record longer than 1 MiB"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("rerun `infra run --data DIR`"),
        "{}",
        out.stderr
    );
    assert_eq!(table_dump(&env).await, before);
    std::fs::remove_file(env.state().join("raw/user_purchase.csv")).unwrap();

    // A file with only invalid rows loads nothing and rejects everything.
    let data = data_dir(&env, &format!("{HEADER}\nx,y\n1,2,3\n"));
    env.infra(&["run", "--data", &data, "--only", "0"]).ok();
    assert!(table_dump(&env).await.is_empty());
    let rejects =
        std::fs::read_to_string(env.state().join("staging/rejects/user_purchase.csv")).unwrap();
    assert_eq!(rejects.lines().count(), 3, "{rejects}");
}
