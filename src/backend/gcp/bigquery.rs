//! BigQuery v2 over REST, and the [`Warehouse`] it supplies on GCP.
//!
//! A table is replaced by one load job from Parquet in Cloud Storage with
//! `WRITE_TRUNCATE`, which BigQuery applies atomically. The job id is
//! chosen here from the caller's prefix and the table, so a submit that is
//! retried after a lost response meets a 409 and re-attaches to the job
//! the first attempt started, instead of loading twice. Queries page
//! through `getQueryResults`; NUMERIC values stay exact text and
//! TIMESTAMPs are rendered ISO 8601 UTC, as the DuckDB warehouse does.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use chrono::DateTime;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::deadline::{self, DeadlinePassed, Deadlines};
use super::http::{Call, Http, Idempotency, encode_segment};
use super::ids;
use crate::backend::{
    Cell, Column, ColumnKind, Journal, QueryResult, Remote, RemoteKind, Request, TableRef,
    Warehouse,
};

/// The real service.
pub const BIGQUERY_URL: &str = "https://bigquery.googleapis.com";

/// Rows per page of query results.
const PAGE_ROWS: u32 = 10_000;

/// A BigQuery job that finished with `status.errorResult`.
#[derive(Debug, thiserror::Error)]
#[error("BigQuery job {job_id} failed: {}{}", .error, .errors.iter().map(|e| format!("\n  - {e}")).collect::<String>())]
pub struct JobFailed {
    pub job_id: String,
    /// `errorResult`: reason and message.
    pub error: String,
    /// Every entry of `status.errors`.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    #[serde(default)]
    pub job_reference: Option<JobReference>,
    #[serde(default)]
    pub status: JobStatus,
    #[serde(default)]
    pub statistics: Option<JobStatistics>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReference {
    pub project_id: String,
    pub job_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    #[serde(default)]
    pub state: String,
    pub error_result: Option<ErrorProto>,
    #[serde(default)]
    pub errors: Vec<ErrorProto>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorProto {
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub location: Option<String>,
}

impl std::fmt::Display for ErrorProto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)?;
        if let Some(location) = self.location.as_deref().filter(|l| !l.is_empty()) {
            write!(f, " (at {location})")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobStatistics {
    pub load: Option<LoadStatistics>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadStatistics {
    /// int64 as a decimal string.
    pub output_rows: Option<String>,
    pub bad_records: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    /// uint64 as a decimal string.
    pub num_rows: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TableList {
    #[serde(default)]
    tables: Vec<TableListItem>,
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TableListItem {
    table_reference: TableReference,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TableReference {
    table_id: String,
}

/// `jobs.query` and `jobs.getQueryResults` answers (the fields we read).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryPage {
    #[serde(default)]
    job_complete: bool,
    job_reference: Option<JobReference>,
    schema: Option<Schema>,
    #[serde(default)]
    rows: Vec<Row>,
    page_token: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorProto>,
}

#[derive(Debug, Clone, Deserialize)]
struct Schema {
    #[serde(default)]
    fields: Vec<Field>,
}

#[derive(Debug, Clone, Deserialize)]
struct Field {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    mode: Option<String>,
    /// A parameterized NUMERIC/BIGNUMERIC's scale (int64 as a string).
    #[serde(default)]
    scale: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Row {
    #[serde(default)]
    f: Vec<RowCell>,
}

#[derive(Debug, Deserialize)]
struct RowCell {
    #[serde(default)]
    v: Value,
}

/// A BigQuery client for one project and location.
#[derive(Clone)]
pub struct BigQuery {
    http: Http,
    base: String,
    project: String,
    location: String,
    poll: Duration,
    /// How long one job may take (`deadlines.bigquery_job_secs`).
    deadline: Duration,
}

impl BigQuery {
    pub fn new(
        http: Http,
        base_url: &str,
        project: &str,
        location: &str,
        poll: Duration,
    ) -> BigQuery {
        BigQuery {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            project: project.to_owned(),
            location: location.to_owned(),
            poll,
            deadline: Deadlines::default().bigquery_job,
        }
    }

    /// Gives each job `limit` to finish.
    pub fn with_deadline(mut self, limit: Duration) -> BigQuery {
        self.deadline = limit;
        self
    }

    fn project_url(&self) -> String {
        format!(
            "{}/bigquery/v2/projects/{}",
            self.base,
            encode_segment(&self.project)
        )
    }

    fn table_url(&self, dataset: &str, table: &str) -> String {
        format!(
            "{}/datasets/{}/tables/{}",
            self.project_url(),
            encode_segment(dataset),
            encode_segment(table)
        )
    }

    /// The Cloud Console page of a job.
    pub fn console(&self, job_id: &str) -> String {
        format!(
            "https://console.cloud.google.com/bigquery?project={}&j=bq:{}:{job_id}&page=queryresults",
            self.project, self.location
        )
    }

    /// The `datasets.insert` call, as sent (and as `plan` shows it).
    pub fn insert_dataset_call(&self, dataset: &str, labels: &BTreeMap<String, String>) -> Call {
        Call::new(
            Method::POST,
            format!("{}/datasets", self.project_url()),
            Idempotency::Idempotent,
        )
        .json(&json!({
            "datasetReference": { "projectId": self.project, "datasetId": dataset },
            "location": self.location,
            "labels": labels,
        }))
    }

    /// Creates the dataset; one that exists already is fine.
    pub async fn insert_dataset(
        &self,
        dataset: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        let call = self.insert_dataset_call(dataset, labels);
        match self.http.send(&call).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() => Ok(()),
            Err(e) => Err(e).with_context(|| {
                format!("cannot create BigQuery dataset {}.{dataset}", self.project)
            }),
        }
    }

    /// Deletes the dataset with every table in it; one already gone is fine.
    pub async fn delete_dataset(&self, dataset: &str) -> Result<()> {
        let call = Call::delete(format!(
            "{}/datasets/{}",
            self.project_url(),
            encode_segment(dataset)
        ))
        .query("deleteContents", "true");
        match self.http.send(&call).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e).with_context(|| {
                format!("cannot delete BigQuery dataset {}.{dataset}", self.project)
            }),
        }
    }

    /// The ids of the dataset's tables, every page; none when it is gone.
    pub async fn list_tables(&self, dataset: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut call = Call::get(format!(
                "{}/datasets/{}/tables",
                self.project_url(),
                encode_segment(dataset)
            ));
            if let Some(token) = &token {
                call = call.query("pageToken", token);
            }
            let page: TableList = match self.http.json(&call).await {
                Ok(page) => page,
                Err(e) if e.is_not_found() => return Ok(out),
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot list the tables of {dataset}"));
                }
            };
            out.extend(page.tables.into_iter().map(|t| t.table_reference.table_id));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Deletes a table; one already gone is fine.
    pub async fn delete_table(&self, dataset: &str, table: &str) -> Result<()> {
        match self
            .http
            .send(&Call::delete(self.table_url(dataset, table)))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => {
                Err(e).with_context(|| format!("cannot delete BigQuery table {dataset}.{table}"))
            }
        }
    }

    pub async fn get_table(&self, dataset: &str, table: &str) -> Result<Table> {
        self.http
            .json(&Call::get(self.table_url(dataset, table)))
            .await
            .with_context(|| format!("cannot get BigQuery table {dataset}.{table}"))
    }

    /// The `jobs.insert` call, as sent (and as `plan` shows it).
    pub fn insert_job_call(&self, job_id: &str, configuration: &Value) -> Call {
        let body = json!({
            "jobReference": JobReference {
                project_id: self.project.clone(),
                job_id: job_id.to_owned(),
                location: Some(self.location.clone()),
            },
            "configuration": configuration,
        });
        Call::new(
            Method::POST,
            format!("{}/jobs", self.project_url()),
            Idempotency::Idempotent,
        )
        .json(&body)
    }

    /// Inserts a job with the caller's `job_id`; if that id exists already
    /// (our own earlier attempt), returns the existing job.
    pub async fn insert_job(&self, job_id: &str, configuration: Value) -> Result<Job> {
        let call = self.insert_job_call(job_id, &configuration);
        tracing::info!("starting BigQuery job {job_id}: {}", self.console(job_id));
        match self.http.json(&call).await {
            Ok(job) => Ok(job),
            Err(e) if e.is_conflict() => {
                tracing::info!("BigQuery job {job_id} exists already; re-attaching to it");
                self.get_job(job_id).await
            }
            Err(e) => Err(e).with_context(|| format!("cannot start BigQuery job {job_id}")),
        }
    }

    pub async fn get_job(&self, job_id: &str) -> Result<Job> {
        let call = Call::get(format!(
            "{}/jobs/{}",
            self.project_url(),
            encode_segment(job_id)
        ))
        .query("location", &self.location);
        self.http
            .json(&call)
            .await
            .with_context(|| format!("cannot get BigQuery job {job_id}"))
    }

    /// Polls until the job is DONE. A job with `errorResult` is a
    /// [`JobFailed`]. One still running at the deadline is cancelled, and
    /// the error is a [`DeadlinePassed`].
    pub async fn wait_job(&self, job_id: &str, job: Job) -> Result<Job> {
        let progress = crate::ui::Progress::waiting(
            format!("BigQuery job {job_id}"),
            &job.status.state,
            self.deadline,
        );
        let passed = || DeadlinePassed {
            what: "BigQuery job".to_owned(),
            id: job_id.to_owned(),
            limit: self.deadline,
            setting: "deadlines.bigquery_job_secs",
            link: self.console(job_id),
        };
        let result =
            deadline::within(self.deadline, passed, self.poll_job(job_id, job, &progress)).await;
        progress.finish();
        if result.as_ref().is_err_and(|e| e.is::<DeadlinePassed>()) {
            self.cancel_job(job_id).await;
        }
        result
    }

    /// Asks BigQuery to cancel `job_id`; a failure is logged, as the
    /// caller is already failing with the reason.
    /// <https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/cancel>
    async fn cancel_job(&self, job_id: &str) {
        let call = Call::new(
            Method::POST,
            format!(
                "{}/jobs/{}/cancel",
                self.project_url(),
                encode_segment(job_id)
            ),
            Idempotency::Idempotent,
        )
        .query("location", &self.location);
        match self.http.send(&call).await {
            Ok(_) => tracing::warn!("cancelled BigQuery job {job_id}"),
            Err(e) => tracing::warn!("cannot cancel BigQuery job {job_id}: {e}"),
        }
    }

    async fn poll_job(
        &self,
        job_id: &str,
        mut job: Job,
        progress: &crate::ui::Progress,
    ) -> Result<Job> {
        while job.status.state != "DONE" {
            tokio::time::sleep(self.poll).await;
            job = self.get_job(job_id).await?;
            progress.set_message(&job.status.state);
        }
        if let Some(error) = &job.status.error_result {
            return Err(JobFailed {
                job_id: job_id.to_owned(),
                error: error.to_string(),
                errors: job.status.errors.iter().map(ToString::to_string).collect(),
            }
            .into());
        }
        Ok(job)
    }

    /// Runs `sql` (standard SQL) and returns every row, page by page.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        let request_id = format!("infra-{:016x}", rand::random::<u64>());
        let body = json!({
            "query": sql,
            "useLegacySql": false,
            "location": self.location,
            "requestId": request_id,
            "maxResults": PAGE_ROWS,
            "timeoutMs": 10_000,
            "formatOptions": { "useInt64Timestamp": true },
        });
        let call = Call::new(
            Method::POST,
            format!("{}/queries", self.project_url()),
            Idempotency::Idempotent,
        )
        .json(&body);
        let mut page: QueryPage = self.http.json(&call).await.context("the query failed")?;
        let reference = page
            .job_reference
            .clone()
            .context("BigQuery answered the query without a job reference")?;
        let job_id = reference.job_id;
        let location = reference.location.unwrap_or_else(|| self.location.clone());
        let results = |token: Option<&str>| {
            let mut call = Call::get(format!(
                "{}/queries/{}",
                self.project_url(),
                encode_segment(&job_id)
            ))
            .query("location", &location)
            .query("maxResults", PAGE_ROWS)
            .query("timeoutMs", 10_000)
            .query("formatOptions.useInt64Timestamp", "true");
            if let Some(token) = token {
                call = call.query("pageToken", token);
            }
            call
        };
        while !page.job_complete {
            page = self
                .http
                .json(&results(None))
                .await
                .context("the query failed")?;
        }
        if !page.errors.is_empty() && page.schema.is_none() {
            bail!(
                "the query failed:{}",
                page.errors
                    .iter()
                    .map(|e| format!("\n  - {e}"))
                    .collect::<String>()
            );
        }
        let schema = page
            .schema
            .clone()
            .context("BigQuery returned no schema for the query")?;
        let mut result = QueryResult {
            columns: schema.fields.iter().map(|f| f.name.clone()).collect(),
            rows: Vec::new(),
        };
        loop {
            for row in &page.rows {
                result.rows.push(convert_row(&schema, row)?);
            }
            match page.page_token.take().filter(|t| !t.is_empty()) {
                Some(token) => {
                    page = self
                        .http
                        .json(&results(Some(&token)))
                        .await
                        .with_context(|| {
                            format!("cannot read the results of query job {job_id}")
                        })?;
                }
                None => return Ok(result),
            }
        }
    }
}

fn convert_row(schema: &Schema, row: &Row) -> Result<Vec<Option<Cell>>> {
    if row.f.len() != schema.fields.len() {
        bail!(
            "a result row has {} values for {} columns",
            row.f.len(),
            schema.fields.len()
        );
    }
    schema
        .fields
        .iter()
        .zip(&row.f)
        .map(|(field, cell)| convert(field, &cell.v))
        .collect()
}

/// One value as exact text: NUMERIC as BigQuery wrote it, TIMESTAMP (int64
/// microseconds, as asked) as ISO 8601 UTC.
fn convert(field: &Field, value: &Value) -> Result<Option<Cell>> {
    let column = &field.name;
    if field.mode.as_deref() == Some("REPEATED")
        || matches!(field.kind.as_str(), "RECORD" | "STRUCT" | "RANGE")
    {
        bail!(
            "column {column} has type {} {}, which `infra query` cannot print\nhint: select its fields, or TO_JSON_STRING({column})",
            field.mode.as_deref().unwrap_or(""),
            field.kind
        );
    }
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(s) => s.as_str(),
        other => bail!("column {column}: unexpected value {other}"),
    };
    let parse_error = || format!("column {column} ({}): cannot read `{text}`", field.kind);
    Ok(Some(match field.kind.as_str() {
        "INTEGER" | "INT64" => Cell::Int(text.parse().with_context(parse_error)?),
        "FLOAT" | "FLOAT64" => Cell::Float(text.parse().with_context(parse_error)?),
        "BOOLEAN" | "BOOL" => Cell::Bool(text.eq_ignore_ascii_case("true")),
        "NUMERIC" | "BIGNUMERIC" | "DECIMAL" | "BIGDECIMAL" => {
            let scale = field.scale.as_deref().and_then(|s| s.parse::<usize>().ok());
            Cell::Text(match scale {
                Some(scale) => pad_scale(text, scale),
                None => text.to_owned(),
            })
        }
        "TIMESTAMP" => {
            let micros: i64 = text.parse().with_context(parse_error)?;
            let ts = DateTime::from_timestamp_micros(micros).with_context(parse_error)?;
            Cell::Text(ts.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
        }
        _ => Cell::Text(text.to_owned()),
    }))
}

/// `12.5` at scale 3 is `12.500`, as PostgreSQL and DuckDB print a
/// DECIMAL(38,3): BigQuery drops trailing zeros.
/// A value that is not a plain decimal is left as it is.
pub fn pad_scale(text: &str, scale: usize) -> String {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if scale == 0 || frac.len() >= scale || !plain(int.trim_start_matches('-')) || !plain(frac) {
        return text.to_owned();
    }
    format!("{int}.{frac:0<scale$}")
}

/// A column as a BigQuery `TableFieldSchema`.
///
/// DECIMAL(38,3) is `BIGNUMERIC(38,3)`: NUMERIC has scale 9 and so only 29
/// integer digits, short of the 35 a DECIMAL(38,3) may have; a
/// parameterized BIGNUMERIC holds exactly that domain and refuses what
/// falls outside it, as PostgreSQL and DuckDB do. The load also sets
/// `decimalTargetTypes` (see [`DECIMAL_TARGET_TYPES`]): the explicit
/// schema is the table's type, not the type the Parquet values are read as.
fn field_schema(column: &Column) -> Value {
    let mode = if column.nullable {
        "NULLABLE"
    } else {
        "REQUIRED"
    };
    match column.kind {
        ColumnKind::Int64 => json!({"name": column.name, "type": "INT64", "mode": mode}),
        ColumnKind::Decimal38_3 => json!({
            "name": column.name,
            "type": "BIGNUMERIC",
            "precision": "38",
            "scale": "3",
            "mode": mode,
        }),
        ColumnKind::Timestamp => json!({"name": column.name, "type": "TIMESTAMP", "mode": mode}),
    }
}

/// The types BigQuery may read a Parquet DECIMAL as. The default for
/// Parquet is `["NUMERIC"]` ("Defaults to ["NUMERIC", "STRING"] for ORC and
/// ["NUMERIC"] for the other file formats", JobConfigurationLoad), and when
/// no listed type "supports the precision and the scale [...] if a value
/// exceeds the supported range when reading the data, an error will be
/// thrown": a DECIMAL(38,3) amount with more than NUMERIC's 29 integer
/// digits would fail step 4. With BIGNUMERIC listed, DECIMAL(38,3) is read
/// as BIGNUMERIC and every value fits.
pub const DECIMAL_TARGET_TYPES: [&str; 2] = ["NUMERIC", "BIGNUMERIC"];

/// The warehouse on GCP.
pub struct BigQueryWarehouse {
    pub bigquery: BigQuery,
    /// Labels on the dataset and the load job (`managed-by`, `deployment`).
    pub labels: BTreeMap<String, String>,
}

impl BigQueryWarehouse {
    fn load_configuration(&self, table: &TableRef, columns: &[Column], source: &str) -> Value {
        json!({
            "load": {
                "sourceUris": [source],
                "sourceFormat": "PARQUET",
                "decimalTargetTypes": DECIMAL_TARGET_TYPES,
                "destinationTable": {
                    "projectId": self.bigquery.project,
                    "datasetId": table.dataset,
                    "tableId": table.table,
                },
                "schema": { "fields": columns.iter().map(field_schema).collect::<Vec<_>>() },
                "writeDisposition": "WRITE_TRUNCATE",
                "createDisposition": "CREATE_IF_NEEDED",
            },
            "labels": self.labels,
        })
    }
}

#[async_trait]
impl Warehouse for BigQueryWarehouse {
    async fn replace_from_parquet(
        &self,
        table: &TableRef,
        columns: &[Column],
        source: &str,
        journal: &dyn Journal,
    ) -> Result<u64> {
        if !source.starts_with("gs://") {
            bail!("BigQuery loads from Cloud Storage, not {source}");
        }
        self.bigquery
            .insert_dataset(&table.dataset, &self.labels)
            .await?;
        let configuration = self.load_configuration(table, columns, source);
        // An earlier attempt's load still running is waited for, not repeated.
        let earlier = journal.earlier(RemoteKind::BigQueryJob).pop();
        let (id, job) = match earlier {
            Some(earlier) => match self.bigquery.get_job(&earlier.id).await {
                Ok(job) if job.status.error_result.is_none() => {
                    tracing::info!("re-attaching to BigQuery job {}", earlier.id);
                    (earlier.id, job)
                }
                _ => self.start_load(table, configuration, journal).await?,
            },
            None => self.start_load(table, configuration, journal).await?,
        };
        let job = self
            .bigquery
            .wait_job(&id, job)
            .await
            .with_context(|| format!("cannot load {source} into {table}"))?;
        let load = job.statistics.and_then(|s| s.load).unwrap_or_default();
        let output_rows: u64 = load
            .output_rows
            .as_deref()
            .context("the load job reported no outputRows")?
            .parse()
            .context("the load job's outputRows is not a number")?;
        if let Some(bad) = load.bad_records.as_deref().filter(|b| *b != "0") {
            bail!("the load of {source} into {table} skipped {bad} bad records");
        }
        let in_table: u64 = self
            .bigquery
            .get_table(&table.dataset, &table.table)
            .await?
            .num_rows
            .as_deref()
            .unwrap_or("0")
            .parse()
            .with_context(|| format!("{table} reports a numRows that is not a number"))?;
        if in_table != output_rows {
            bail!("the load job wrote {output_rows} rows, but {table} holds {in_table}");
        }
        Ok(output_rows)
    }

    async fn query(&self, sql: &str) -> Result<QueryResult> {
        self.bigquery.query(sql).await
    }

    fn preview(
        &self,
        table: &TableRef,
        columns: &[Column],
        source: &str,
        run_id: &str,
    ) -> Vec<Request> {
        let id = load_job_id(run_id, 1, table);
        vec![
            self.bigquery
                .insert_dataset_call(&table.dataset, &self.labels)
                .to_request("409 (it exists) is fine"),
            self.bigquery
                .insert_job_call(&id, &self.load_configuration(table, columns, source))
                .to_request(
                    "then jobs.get until DONE; outputRows is checked against step 3's count",
                ),
        ]
    }
}

/// The load job's id: one per attempt of a run, so a retried insert
/// re-attaches to its own job and a new attempt loads afresh.
fn load_job_id(run_id: &str, attempt: u32, table: &TableRef) -> String {
    ids::bigquery_job_id(&[
        run_id,
        &attempt.to_string(),
        "load",
        &table.dataset,
        &table.table,
    ])
}

impl BigQueryWarehouse {
    async fn start_load(
        &self,
        table: &TableRef,
        configuration: Value,
        journal: &dyn Journal,
    ) -> Result<(String, Job)> {
        let id = load_job_id(journal.run_id(), journal.attempt(), table);
        journal.started(Remote {
            kind: RemoteKind::BigQueryJob,
            id: id.clone(),
            uuid: None,
            link: Some(self.bigquery.console(&id)),
        })?;
        let job = self.bigquery.insert_job(&id, configuration).await?;
        Ok((id, job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, kind: &str) -> Field {
        Field {
            name: name.into(),
            kind: kind.into(),
            mode: Some("NULLABLE".into()),
            scale: None,
        }
    }

    #[test]
    fn decimals_are_padded_to_their_scale_like_duckdb() {
        let mut f = field("amount_spent", "BIGNUMERIC");
        f.scale = Some("3".into());
        for (bq, want) in [
            ("12.5", "12.500"),
            ("7", "7.000"),
            ("-0.125", "-0.125"),
            ("1.25", "1.250"),
        ] {
            assert_eq!(
                convert(&f, &json!(bq)).unwrap(),
                Some(Cell::Text(want.into())),
                "{bq}"
            );
        }
    }

    #[test]
    fn decimal_38_3_is_a_bignumeric_38_3() {
        let column = Column {
            name: "amount_spent",
            kind: ColumnKind::Decimal38_3,
            nullable: true,
        };
        assert_eq!(
            field_schema(&column),
            json!({"name": "amount_spent", "type": "BIGNUMERIC", "precision": "38", "scale": "3", "mode": "NULLABLE"})
        );
    }

    #[test]
    fn values_render_like_duckdb() {
        let cases = [
            (
                field("d", "NUMERIC"),
                json!("12345678901234567890123456789.123"),
                Some(Cell::Text("12345678901234567890123456789.123".into())),
            ),
            (
                field("ts", "TIMESTAMP"),
                json!("1795729200500000"),
                Some(Cell::Text("2026-11-26T21:40:00.500Z".into())),
            ),
            (field("n", "INTEGER"), json!("-42"), Some(Cell::Int(-42))),
            (field("b", "BOOLEAN"), json!("true"), Some(Cell::Bool(true))),
            (field("f", "FLOAT"), json!("0.25"), Some(Cell::Float(0.25))),
            (
                field("s", "STRING"),
                json!("x"),
                Some(Cell::Text("x".into())),
            ),
            (field("z", "INTEGER"), Value::Null, None),
        ];
        for (field, value, want) in cases {
            assert_eq!(convert(&field, &value).unwrap(), want, "{}", field.name);
        }
    }

    #[test]
    fn nested_values_are_refused_with_a_hint() {
        let mut f = field("r", "RECORD");
        f.mode = Some("REPEATED".into());
        let err = convert(&f, &json!([])).unwrap_err().to_string();
        assert!(err.contains("TO_JSON_STRING"), "{err}");
    }

    #[test]
    fn job_failures_list_every_error() {
        let err = JobFailed {
            job_id: "j".into(),
            error: "invalid: bad file".into(),
            errors: vec!["invalid: bad file".into(), "invalid: row 3".into()],
        };
        assert_eq!(
            err.to_string(),
            "BigQuery job j failed: invalid: bad file\n  - invalid: bad file\n  - invalid: row 3"
        );
    }
}
