//! The shared HTTP behaviour, through real client calls against the fake:
//! retries on 429 (honouring Retry-After) and 503 bursts, per-attempt
//! timeouts and the call deadline, and no retry of a call that must not
//! be sent twice.

use std::time::Duration;

use infra::backend::gcp::bigquery::BigQuery;
use infra::backend::gcp::dataproc::Dataproc;
use infra::backend::gcp::http::{ApiError, RetryPolicy};

use super::{fast_policy, http};
use gcp_fakes::google::{FakeGoogle, Fault};

fn dataproc(fake: &FakeGoogle, policy: RetryPolicy) -> Dataproc {
    Dataproc::new(
        http(policy),
        &fake.url,
        "proj",
        "r",
        Duration::from_millis(2),
    )
}

fn api_error(err: &anyhow::Error) -> &ApiError {
    err.chain()
        .find_map(|e| e.downcast_ref::<ApiError>())
        .expect("an ApiError")
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_says() {
    let fake = FakeGoogle::start("unused").await;
    fake.add_cluster("c1", serde_json::json!({}));
    fake.inject(
        "clusters.get",
        1,
        Fault::Status {
            code: 429,
            retry_after: Some(1),
        },
    );
    let cluster = dataproc(&fake, fast_policy())
        .get_cluster("c1")
        .await
        .unwrap();
    assert!(cluster.is_some());
    let calls = fake.calls("clusters.get");
    assert_eq!(calls.len(), 2);
    let waited = calls[1].at - calls[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, not the 1 s Retry-After asked"
    );
    fake.assert_clean();
}

#[tokio::test]
async fn a_503_burst_is_ridden_out_and_a_longer_one_reported() {
    let fake = FakeGoogle::start("unused").await;
    fake.add_cluster("c1", serde_json::json!({}));
    let client = dataproc(&fake, fast_policy());
    fake.inject(
        "clusters.get",
        3,
        Fault::Status {
            code: 503,
            retry_after: None,
        },
    );
    assert!(client.get_cluster("c1").await.unwrap().is_some());
    assert_eq!(fake.calls("clusters.get").len(), 4);

    fake.inject(
        "clusters.get",
        10,
        Fault::Status {
            code: 503,
            retry_after: None,
        },
    );
    let err = client.get_cluster("c1").await.unwrap_err();
    assert_eq!(api_error(&err).status().map(|s| s.as_u16()), Some(503));
    assert!(format!("{err:#}").contains("cluster c1"), "{err:#}");
    assert_eq!(
        fake.calls("clusters.get").len(),
        4 + 5,
        "1 attempt + 4 retries"
    );
}

#[tokio::test]
async fn a_slow_answer_is_retried_and_the_deadline_holds() {
    let fake = FakeGoogle::start("unused").await;
    fake.add_table("ds", "t");
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(200),
        deadline: Duration::from_millis(1500),
        ..fast_policy()
    };
    let bq = BigQuery::new(
        http(policy),
        &fake.url,
        "proj",
        "US",
        Duration::from_millis(2),
    );
    fake.inject("tables.get", 1, Fault::Slow(Duration::from_secs(3)));
    assert_eq!(
        bq.get_table("ds", "t").await.unwrap().num_rows.as_deref(),
        Some("1")
    );
    assert_eq!(fake.calls("tables.get").len(), 2);

    fake.inject("tables.get", 100, Fault::Slow(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    let err = bq.get_table("ds", "t").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1400),
        "the call outlived its attempts: {took:?}"
    );
    let text = format!("{err:#}");
    assert!(text.contains("no response within 200ms"), "{text}");
    fake.assert_clean();
}

#[tokio::test]
async fn the_deadline_bounds_the_whole_call() {
    let fake = FakeGoogle::start("unused").await;
    fake.add_table("ds", "t");
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(300),
        deadline: Duration::from_millis(700),
        max_retries: 50,
        ..fast_policy()
    };
    let bq = BigQuery::new(
        http(policy),
        &fake.url,
        "proj",
        "US",
        Duration::from_millis(2),
    );
    fake.inject("tables.get", 100, Fault::Slow(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    let err = bq.get_table("ds", "t").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(api_error(&err), ApiError::Deadline { .. }),
        "{err:#}"
    );
    assert!(format!("{err:#}").contains("deadline of 700ms"), "{err:#}");
}

#[tokio::test]
async fn a_call_that_must_not_repeat_is_not_retried() {
    let fake = FakeGoogle::start("unused").await;
    fake.inject(
        "jobs.cancel",
        5,
        Fault::Status {
            code: 503,
            retry_after: None,
        },
    );
    let err = dataproc(&fake, fast_policy())
        .cancel_job("j1")
        .await
        .unwrap_err();
    assert_eq!(api_error(&err).status().map(|s| s.as_u16()), Some(503));
    assert_eq!(fake.calls("jobs.cancel").len(), 1);
    fake.assert_clean();
}

/// Regression (issue 21): with no route to the API, a DNS failure hinted
/// "the caller needs roles/serviceusage.serviceUsageAdmin" in the middle of
/// a chain that repeated "Hyper error". A transport failure now has one line
/// naming the host, its hint fits the failure and comes last.
#[tokio::test]
async fn transport_failures_name_their_cause_and_hint_at_the_network() {
    use infra::backend::gcp::serviceusage::ServiceUsage;
    // A port that was free a moment ago: nothing listens on it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let policy = RetryPolicy {
        max_retries: 1,
        ..fast_policy()
    };
    let cases = [
        (
            "http://serviceusage.invalid",
            "cannot resolve serviceusage.invalid (DNS)",
            "cannot resolve serviceusage.invalid",
        ),
        (
            &*format!("http://127.0.0.1:{port}"),
            &*format!("cannot connect to 127.0.0.1:{port}: connection refused"),
            "nothing accepts connections",
        ),
    ];
    for (root, cause, hint) in cases {
        let usage = ServiceUsage::new(http(policy.clone()), root, "proj", Duration::from_millis(1));
        let err = usage
            .batch_enable(&["bigquery.googleapis.com"])
            .await
            .unwrap_err();
        let report = anstream::adapter::strip_str(&infra::exit::render(&err)).to_string();
        let lines: Vec<&str> = report.lines().collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("  Caused by: ") && l.contains(cause)),
            "no line `{cause}`:\n{report}"
        );
        let last = lines.last().unwrap();
        assert!(
            last.starts_with("hint: ") && last.contains(hint),
            "{report}"
        );
        assert!(last.contains("endpoints.*"), "{report}");
        assert_eq!(report.matches("hint:").count(), 1, "{report}");
        assert!(!report.contains("roles/"), "{report}");
        assert!(!report.contains("client error (Connect)"), "{report}");
        assert_eq!(lines.len(), 3, "error, one cause, the hint:\n{report}");
    }
}
