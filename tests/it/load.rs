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
    assert_eq!(reader.headers().unwrap(), vec!["line", "reason", "record"]);
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
    let expected = format!(
        "│ {} │ {} │ {} │",
        valid + reasons.len(),
        valid,
        reasons.len()
    );
    assert!(
        status.replace(' ', "").contains(&expected.replace(' ', "")),
        "counts missing from:\n{status}"
    );

    // A second run replaces the rows: the same table, no duplicates.
    env.infra(&["run", "--data", &data, "--only", "0"]).ok();
    assert_eq!(table_dump(&env).await, rows);

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

#[tokio::test]
async fn bad_inputs_fail_clearly_and_keep_the_old_table() {
    let env = Env::new();
    env.infra(&["up"]).ok();
    let (text, valid, _) = purchases();
    let data = data_dir(&env, &text);
    env.infra(&["run", "--data", &data, "--only", "0"]).ok();
    let before = table_dump(&env).await;
    assert_eq!(before.len(), valid);

    // A missing input file is named before anything is copied.
    let empty_dir = env.path().join("nothing");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let out = env
        .infra(&[
            "run",
            "--data",
            &empty_dir.display().to_string(),
            "--only",
            "0",
        ])
        .fails(1);
    assert!(
        out.stderr.contains("missing input file(s)") && out.stderr.contains("user_purchase.csv"),
        "{}",
        out.stderr
    );

    // A wrong header fails and leaves the table as it was.
    let data = data_dir(&env, "Invoice,Stock\n1,2\n");
    let out = env.infra(&["run", "--data", &data, "--only", "0"]).fails(1);
    assert!(
        out.stderr.contains("has the header `Invoice,Stock`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("step 0 load_purchases failed"),
        "{}",
        out.stderr
    );
    assert_eq!(table_dump(&env).await, before);

    // An empty file (no header at all) fails too.
    let data = data_dir(&env, "");
    let out = env.infra(&["run", "--data", &data, "--only", "0"]).fails(1);
    assert!(out.stderr.contains("is empty"), "{}", out.stderr);
    assert_eq!(table_dump(&env).await, before);

    // A header-only file is valid input with no rows.
    let data = data_dir(&env, &format!("{HEADER}\n"));
    env.infra(&["run", "--data", &data, "--only", "0"]).ok();
    assert!(table_dump(&env).await.is_empty());

    // A file with only invalid rows loads nothing and rejects everything.
    let data = data_dir(&env, &format!("{HEADER}\nx,y\n1,2,3\n"));
    env.infra(&["run", "--data", &data, "--only", "0"]).ok();
    assert!(table_dump(&env).await.is_empty());
    let rejects =
        std::fs::read_to_string(env.state().join("staging/rejects/user_purchase.csv")).unwrap();
    assert_eq!(rejects.lines().count(), 3, "{rejects}");
}
