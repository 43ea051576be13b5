//! A Cloud SQL Admin API v1 stand-in that EXECUTES `instances.import`
//! (SQL and CSV files) and `instances.export` (CSV with `selectQuery`)
//! against a real local PostgreSQL, reading and writing the objects in
//! fake-gcs-server, with `operations.get` reporting PENDING, RUNNING and
//! DONE (with `error` on failure).
//!
//! How it holds to Cloud SQL's behaviour:
//! - one operation at a time per instance: another import or export while
//!   one runs (or while a backup or maintenance operation holds the
//!   instance, see [`SqlAdmin::hold`]) answers 409 `operationInProgress`
//!   and creates no operation; `operations.list` shows what runs;
//! - a SQL file runs with `psql`, stopping at the first error and without
//!   wrapping the file in a transaction: statements before the error stay
//!   applied, an explicit `BEGIN … COMMIT` block in the file is atomic;
//! - a CSV file must hold one line per row: a line break inside a quoted
//!   field is refused (see `one_line_per_row`);
//! - a CSV import is one `COPY … FROM STDIN (FORMAT csv)` into the named
//!   table and columns, so a bad row fails the whole import and the table
//!   keeps what it had;
//! - a CSV export runs as `cloudsqlimportexport`, a role that is no
//!   superuser and reads only what it was granted
//!   ([`crate::postgres::EXPORT_USER`]);
//! - a CSV export is `COPY (selectQuery) TO STDOUT (FORMAT csv)`: no header
//!   row, fields quoted with `"` only when needed, `"` doubled, NULL as an
//!   empty unquoted field, PostgreSQL's own text for each value; exporting
//!   onto an object that already exists fails, as `gcloud sql export csv`
//!   documents;
//! - CSV quote, escape and field-delimiter options are hex ASCII codes
//!   (`"22"` for `"`), as the Cloud SQL docs require;
//! - `operations.cancel` (https://cloud.google.com/sql/docs/postgres/import-export/cancel-import-export):
//!   the call "doesn't return any response" and the caller checks the
//!   operation's status with `operations.get`. A cancelled import or
//!   export ends DONE with an `error` and frees the instance; Cloud SQL's
//!   `SqlOperationStatus` has no cancelled state (PENDING, RUNNING, DONE),
//!   and no page gives the error's text, so the stand-in's is its own.
//!   Only an operation left running on purpose ([`SqlAdmin::stall_next_operation`])
//!   is stopped by it: one already executing in PostgreSQL runs to its
//!   end, as a cancel that comes too late does.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::front::{Call, Front, not_found};
use crate::gcs::{Gcs, split_uri};
use crate::postgres::{Postgres, run, run_with_stdout};

/// The instance the stand-in serves.
#[derive(Debug, Clone)]
pub struct SqlInstance {
    pub project: String,
    pub name: String,
    pub region: String,
    pub database: String,
    pub user: String,
}

#[derive(Default)]
struct State {
    operations: BTreeMap<String, Value>,
    /// Operation names, oldest first (`operations.list` answers newest first).
    order: Vec<String>,
    /// The operation running on the instance, if any.
    busy: Option<String>,
    next: u64,
    /// The next `n` CSV imports get a malformed row appended: PostgreSQL
    /// rejects it, and the import fails for real.
    corrupt_csv_imports: usize,
    /// The next import meets a backup that starts just before it and holds
    /// the instance this long.
    backup_at_next_import: Option<std::time::Duration>,
    /// The next `n` CSV imports lose their file's last line.
    short_csv_imports: usize,
    /// The next `n` SQL imports that fail are reported DONE without error.
    silent_sql_failures: usize,
    /// The next `n` imports or exports stay RUNNING until cancelled.
    stall_operations: usize,
    /// Operations left running on purpose, which a cancel ends.
    stalled: std::collections::BTreeSet<String>,
}

/// Cloud SQL's answer to a second operation on a busy instance.
///
/// The rule, from Cloud SQL for PostgreSQL's "Best practices for importing
/// and exporting data" (https://cloud.google.com/sql/docs/postgres/import-export/exporting,
/// read in its zh-CN translation): under "Reduce long-running import and
/// export processes", only one import or export operation can run at a time
/// per instance, and a long one blocks other operations; the serverless
/// export table says a current "any operation (except serverless export)"
/// blocks a new "any operation (except serverless export)". The error, as
/// Cloud SQL returns it (the body quoted in apache/airflow#62671; the same
/// message and reason in terraform-provider-google#4370 as `googleapi: Error
/// 409: Operation failed because another operation was already in
/// progress., operationInProgress`): HTTP 409, reason
/// `operationInProgress`, and no operation is created ("the request is
/// rejected before a new operation is created", airflow#62671).
pub fn operation_in_progress() -> (u16, Value) {
    let message = "Operation failed because another operation was already in progress. Try your request after the current operation is complete.";
    (
        409,
        json!({"error": {"code": 409, "message": message,
            "errors": [{"message": message, "domain": "global", "reason": "operationInProgress"}]}}),
    )
}

#[derive(Clone)]
pub struct SqlAdmin {
    front: Front,
    gcs: Gcs,
    pg: Arc<Postgres>,
    instance: SqlInstance,
    work: std::path::PathBuf,
    state: Arc<Mutex<State>>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl SqlAdmin {
    pub fn new(
        front: Front,
        gcs: Gcs,
        pg: Arc<Postgres>,
        instance: SqlInstance,
        work: std::path::PathBuf,
    ) -> SqlAdmin {
        SqlAdmin {
            front,
            gcs,
            pg,
            instance,
            work,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// The next `times` CSV imports fail inside PostgreSQL (a malformed row).
    pub fn corrupt_csv_imports(&self, times: usize) {
        self.state.lock().unwrap().corrupt_csv_imports += times;
    }

    /// The next import meets the instance's backup window: a
    /// `BACKUP_VOLUME` operation starts just before it and runs for `hold`,
    /// so the import is answered 409 `operationInProgress`.
    pub fn backup_at_next_import(&self, hold: std::time::Duration) {
        self.state.lock().unwrap().backup_at_next_import = Some(hold);
    }

    /// Starts an operation of `kind` (`BACKUP_VOLUME`, `MAINTENANCE`) that
    /// holds the instance until [`SqlAdmin::release`]; returns its name.
    pub fn hold(&self, kind: &str) -> String {
        let mut s = self.state.lock().unwrap();
        let name = self.new_operation(&mut s, kind, None);
        s.busy = Some(name.clone());
        drop(s);
        self.set(&name, |op| {
            op["status"] = json!("RUNNING");
            op["startTime"] = json!(now());
        });
        self.front
            .event(json!({"event": "sql", "operation": name, "type": kind, "held": true}));
        name
    }

    /// Ends an operation started by [`SqlAdmin::hold`].
    pub fn release(&self, name: &str) {
        self.set(name, |op| {
            op["status"] = json!("DONE");
            op["endTime"] = json!(now());
        });
        let mut s = self.state.lock().unwrap();
        if s.busy.as_deref() == Some(name) {
            s.busy = None;
        }
        drop(s);
        self.front
            .event(json!({"event": "sql", "operation": name, "ok": true, "released": true}));
    }

    /// The next `times` imports or exports are accepted and stay RUNNING,
    /// holding the instance and doing nothing, until they are cancelled:
    /// an operation that never finishes.
    pub fn stall_next_operation(&self, times: usize) {
        self.state.lock().unwrap().stall_operations += times;
    }

    /// An operation's status (`PENDING`, `RUNNING`, `DONE`) and its first
    /// error's message, if it exists.
    pub fn operation_state(&self, name: &str) -> Option<(String, Option<String>)> {
        let s = self.state.lock().unwrap();
        let op = s.operations.get(name)?;
        Some((
            op["status"].as_str().unwrap_or_default().to_owned(),
            op["error"]["errors"][0]["message"]
                .as_str()
                .map(str::to_owned),
        ))
    }

    /// `operations.cancel`: see the module's doc for the rules.
    fn cancel(&self, name: &str) -> (u16, Value) {
        let mut s = self.state.lock().unwrap();
        if !s.operations.contains_key(name) {
            return not_found(&format!("The operation {name} does not exist."));
        }
        let stopped = s.stalled.remove(name);
        if stopped && s.busy.as_deref() == Some(name) {
            s.busy = None;
        }
        drop(s);
        if stopped {
            self.set(name, |op| {
                op["status"] = json!("DONE");
                op["endTime"] = json!(now());
                op["error"] = json!({"kind": "sql#operationErrors", "errors": [
                    {"kind": "sql#operationError", "code": "OPERATION_CANCELLED",
                     "message": "The operation was cancelled by operations.cancel."}
                ]});
            });
        }
        self.front
            .event(json!({"event": "sql", "operation": name, "cancel": true, "stopped": stopped}));
        (200, json!({}))
    }

    /// The next `times` CSV imports lose their file's last line (the load
    /// table then holds a row fewer than the file: the swap must refuse).
    pub fn short_csv_imports(&self, times: usize) {
        self.state.lock().unwrap().short_csv_imports += times;
    }

    /// The next `times` SQL imports that fail end DONE with no `error`. No
    /// Cloud SQL page says how an imported SQL file's `RAISE EXCEPTION` is
    /// reported, so a test can play the worst case: not at all.
    pub fn silent_sql_failures(&self, times: usize) {
        self.state.lock().unwrap().silent_sql_failures += times;
    }

    /// Runs SQL as the superuser, for tests to look at the database.
    pub async fn query(&self, sql: &str) -> Result<String> {
        let out = run(
            self.pg
                .psql(&self.instance.database, "postgres")
                .args(["-tA", "-c", sql]),
            "psql",
        )
        .await?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub async fn dispatch(&self, call: Call) -> (u16, Value) {
        let instance = call.seg.get(4).cloned().unwrap_or_default();
        match call.short().as_str() {
            "instances.import" | "instances.export" if instance != self.instance.name => not_found(
                &format!("The Cloud SQL instance {instance} does not exist."),
            ),
            "instances.import" => self.start(&call, "IMPORT"),
            "instances.export" => self.start(&call, "EXPORT"),
            "instances.get" if instance == self.instance.name => (200, self.instance_json()),
            "instances.get" => not_found(&format!(
                "The Cloud SQL instance {instance} does not exist."
            )),
            "operations.list" => {
                if call.req.param("instance") != Some(self.instance.name.as_str()) {
                    self.front.violation(
                        "operations.list without `instance`: Cloud SQL lists one instance's operations",
                    );
                }
                let s = self.state.lock().unwrap();
                // "in the reverse chronological order of the start time" (sqladmin.v1.json)
                let items: Vec<Value> = s
                    .order
                    .iter()
                    .rev()
                    .filter_map(|name| s.operations.get(name).cloned())
                    .collect();
                (200, json!({"kind": "sql#operationsList", "items": items}))
            }
            // v1/projects/{project}/operations/{operation}/cancel
            "operations.cancel" => self.cancel(call.seg.get(4).map_or("", String::as_str)),
            "operations.get" => {
                let name = call.last();
                match self.state.lock().unwrap().operations.get(name) {
                    Some(op) => (200, op.clone()),
                    None => not_found(&format!("The operation {name} does not exist.")),
                }
            }
            other => {
                self.front
                    .violation(format!("the Cloud SQL stand-in does not play {other}"));
                (501, Value::Null)
            }
        }
    }

    fn instance_json(&self) -> Value {
        let i = &self.instance;
        json!({
            "kind": "sql#instance",
            "name": i.name,
            "project": i.project,
            "region": i.region,
            "state": "RUNNABLE",
            "databaseVersion": "POSTGRES_15",
            "connectionName": format!("{}:{}:{}", i.project, i.region, i.name),
            "serviceAccountEmailAddress": "p-rehearsal@gcp-sa-cloud-sql.iam.gserviceaccount.com",
            "ipAddresses": [{"type": "PRIVATE", "ipAddress": "10.99.0.3"}],
        })
    }

    /// A new PENDING operation of `kind`, recorded (not yet holding the instance).
    fn new_operation(&self, s: &mut State, kind: &str, context: Option<(&str, &Value)>) -> String {
        s.next += 1;
        let name = format!(
            "{:08x}-{:04x}-rehearsal-op-{:012}",
            Utc::now().timestamp() as u32,
            s.next & 0xffff,
            s.next
        );
        let i = &self.instance;
        let mut op = json!({
            "kind": "sql#operation",
            "name": name,
            "status": "PENDING",
            "operationType": kind,
            "insertTime": now(),
            "targetId": i.name,
            "targetProject": i.project,
            "targetLink": format!("https://sqladmin.googleapis.com/v1/projects/{}/instances/{}", i.project, i.name),
            "selfLink": format!("https://sqladmin.googleapis.com/v1/projects/{}/operations/{name}", i.project),
            "user": "infra-rehearsal@rehearsal.iam.gserviceaccount.com",
        });
        if let Some((key, context)) = context {
            op[key] = context.clone();
        }
        s.operations.insert(name.clone(), op);
        s.order.push(name.clone());
        name
    }

    fn start(&self, call: &Call, kind: &str) -> (u16, Value) {
        // Taken in its own statement: the guard must be gone before `hold` locks.
        let backup = if kind == "IMPORT" {
            self.state.lock().unwrap().backup_at_next_import.take()
        } else {
            None
        };
        if let Some(hold) = backup {
            let backup = self.hold("BACKUP_VOLUME");
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                this.release(&backup);
            });
        }
        let mut s = self.state.lock().unwrap();
        if let Some(busy) = &s.busy {
            self.front
                .event(json!({"event": "sql", "refused": kind, "busy": busy}));
            return operation_in_progress();
        }
        let (context_key, context) = if kind == "IMPORT" {
            ("importContext", call.body["importContext"].clone())
        } else {
            ("exportContext", call.body["exportContext"].clone())
        };
        let name = self.new_operation(&mut s, kind, Some((context_key, &context)));
        let op = s.operations[&name].clone();
        s.busy = Some(name.clone());
        let csv = kind == "IMPORT" && context["fileType"] == "CSV";
        let corrupt = csv && s.corrupt_csv_imports > 0;
        if corrupt {
            s.corrupt_csv_imports -= 1;
        }
        let short = csv && s.short_csv_imports > 0;
        if short {
            s.short_csv_imports -= 1;
        }
        if s.stall_operations > 0 {
            s.stall_operations -= 1;
            s.stalled.insert(name.clone());
            drop(s);
            self.set(&name, |op| {
                op["status"] = json!("RUNNING");
                op["startTime"] = json!(now());
            });
            self.front
                .event(json!({"event": "sql", "operation": name, "type": kind, "stalled": true}));
            return (200, op);
        }
        drop(s);
        let this = self.clone();
        let op_name = name.clone();
        let kind = kind.to_owned();
        tokio::spawn(async move {
            this.set(&op_name, |op| {
                op["status"] = json!("RUNNING");
                op["startTime"] = json!(now());
            });
            let result = if kind == "IMPORT" {
                this.import(&context, corrupt, short).await
            } else {
                this.export(&context).await
            };
            let silent = result.is_err() && context["fileType"] == "SQL" && {
                let mut s = this.state.lock().unwrap();
                let silent = s.silent_sql_failures > 0;
                s.silent_sql_failures = s.silent_sql_failures.saturating_sub(1);
                silent
            };
            this.set(&op_name, |op| {
                op["status"] = json!("DONE");
                op["endTime"] = json!(now());
                if let Err(e) = &result
                    && !silent
                {
                    op["error"] = json!({"kind": "sql#operationErrors", "errors": [
                        {"kind": "sql#operationError", "code": "ERROR_RDBMS", "message": format!("{e:#}")}
                    ]});
                }
            });
            this.front.event(
                json!({"event": "sql", "operation": op_name, "type": kind, "ok": result.is_ok()}),
            );
            this.state.lock().unwrap().busy = None;
        });
        (200, op)
    }

    fn set(&self, name: &str, f: impl FnOnce(&mut Value)) {
        if let Some(op) = self.state.lock().unwrap().operations.get_mut(name) {
            f(op);
        }
    }

    async fn import(&self, context: &Value, corrupt: bool, short: bool) -> Result<()> {
        let uri = context["uri"]
            .as_str()
            .context("importContext.uri is missing")?;
        let database = context["database"]
            .as_str()
            .context("importContext.database is missing")?;
        if database != self.instance.database {
            bail!(
                "Database {database} does not exist on instance {}",
                self.instance.name
            );
        }
        let user = context["importUser"].as_str().unwrap_or("postgres");
        let (bucket, key) = split_uri(uri).with_context(|| format!("{uri} is not a gs:// URI"))?;
        let dir = tempfile::tempdir_in(&self.work)?;
        let file = dir.path().join("import");
        if !self.gcs.download(bucket, key, &file).await? {
            bail!(
                "The specified file {uri} does not exist or the instance's service account cannot read it."
            );
        }
        if key.ends_with(".gz") {
            bail!("the rehearsal's Cloud SQL stand-in does not decompress .gz imports");
        }
        match context["fileType"].as_str() {
            Some("SQL") => {
                run(
                    self.pg.psql(database, user).arg("-f").arg(&file),
                    "the SQL import",
                )
                .await?;
            }
            Some("CSV") => {
                let options = &context["csvImportOptions"];
                let table = options["table"]
                    .as_str()
                    .context("csvImportOptions.table is missing")?;
                if corrupt {
                    let mut f = tokio::fs::OpenOptions::new()
                        .append(true)
                        .open(&file)
                        .await?;
                    // An unterminated quote at the very end: PostgreSQL's
                    // COPY refuses it, and no line break is inside it (which
                    // `one_line_per_row` would refuse first).
                    f.write_all(b"\"rehearsal: a malformed row injected by the test")
                        .await?;
                }
                if short {
                    let text = tokio::fs::read(&file).await?;
                    let body = text.strip_suffix(b"\n").unwrap_or(&text);
                    let keep = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                    tokio::fs::write(&file, &text[..keep]).await?;
                }
                let columns = match options["columns"].as_array() {
                    Some(cols) if !cols.is_empty() => format!(
                        " ({})",
                        cols.iter()
                            .map(|c| c.as_str().unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => String::new(),
                };
                one_line_per_row(&file, options)?;
                let sql = format!(
                    "COPY {table}{columns} FROM STDIN WITH (FORMAT csv{})",
                    csv_options(options)?
                );
                let stdin = std::fs::File::open(&file)?;
                run(
                    self.pg
                        .psql(database, user)
                        .args(["-c", &sql])
                        .stdin(Stdio::from(stdin)),
                    "the CSV import",
                )
                .await?;
            }
            other => bail!("fileType {other:?}: the stand-in imports SQL and CSV files only"),
        }
        Ok(())
    }

    async fn export(&self, context: &Value) -> Result<()> {
        let uri = context["uri"]
            .as_str()
            .context("exportContext.uri is missing")?;
        let database = context["databases"][0]
            .as_str()
            .context("exportContext.databases is missing")?;
        if context["fileType"] != "CSV" {
            bail!(
                "fileType {}: the stand-in exports CSV only",
                context["fileType"]
            );
        }
        let options = &context["csvExportOptions"];
        let query = options["selectQuery"]
            .as_str()
            .context("csvExportOptions.selectQuery is missing")?;
        let (bucket, key) = split_uri(uri).with_context(|| format!("{uri} is not a gs:// URI"))?;
        if self.gcs.read_meta(bucket, key).await? {
            bail!("The file {uri} already exists: an export does not overwrite an object.");
        }
        let dir = tempfile::tempdir_in(&self.work)?;
        let file = dir.path().join("export.csv");
        let sql = format!(
            "COPY ({}) TO STDOUT WITH (FORMAT csv{})",
            query.trim().trim_end_matches(';'),
            csv_options(options)?
        );
        let out = std::fs::File::create(&file)?;
        run_with_stdout(
            self.pg
                .psql(database, crate::postgres::EXPORT_USER)
                .args(["-c", &sql])
                .stdout(Stdio::from(out)),
            "the CSV export",
        )
        .await?;
        self.gcs.upload_file(bucket, key, &file).await?;
        Ok(())
    }
}

/// "CSV files must have one line for each row of data fields"
/// (cloud.google.com/sql/docs/postgres/import-export/import-export-csv,
/// "Before you begin"). What Cloud SQL does with a quoted line break is
/// not documented, so the stand-in refuses the file rather than guess.
fn one_line_per_row(file: &std::path::Path, options: &Value) -> Result<()> {
    use std::io::Read as _;
    let quote = match options["quoteCharacter"].as_str() {
        Some(hex) => u8::from_str_radix(hex.trim_start_matches("0x"), 16)?,
        None => b'"',
    };
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    let (mut quoted, mut line) = (false, 1u64);
    for byte in reader.bytes() {
        match byte? {
            b if b == quote => quoted = !quoted,
            b'\n' | b'\r' if quoted => bail!(
                "line {line} of the CSV file has a line break inside a quoted field: Cloud SQL's CSV import takes one line for each row of data fields"
            ),
            b'\n' => line += 1,
            _ => {}
        }
    }
    Ok(())
}

/// COPY options from Cloud SQL's CSV options (hex ASCII codes).
fn csv_options(options: &Value) -> Result<String> {
    let mut out = String::new();
    for (field, copy) in [
        ("quoteCharacter", "QUOTE"),
        ("escapeCharacter", "ESCAPE"),
        ("fieldsTerminatedBy", "DELIMITER"),
    ] {
        if let Some(hex) = options[field].as_str() {
            let code = u8::from_str_radix(hex.trim_start_matches("0x"), 16)
                .ok()
                .filter(|c| c.is_ascii())
                .with_context(|| {
                    format!("{field} `{hex}` is not a character in hex ASCII code (e.g. \"22\")")
                })?;
            let c = code as char;
            let quoted = if c == '\'' {
                "''".to_owned()
            } else {
                c.to_string()
            };
            out.push_str(&format!(", {copy} '{quoted}'"));
        }
    }
    if let Some(lines) = options["linesTerminatedBy"].as_str()
        && lines != "0A"
    {
        bail!("linesTerminatedBy `{lines}`: PostgreSQL's COPY ends lines with a newline only");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_options_are_hex_codes() {
        let options =
            json!({"quoteCharacter": "22", "escapeCharacter": "5C", "fieldsTerminatedBy": "2C"});
        assert_eq!(
            csv_options(&options).unwrap(),
            ", QUOTE '\"', ESCAPE '\\', DELIMITER ','"
        );
        assert!(csv_options(&json!({"quoteCharacter": "\""})).is_err());
        assert!(csv_options(&json!({"linesTerminatedBy": "0D0A"})).is_err());
    }

    #[test]
    fn a_csv_import_takes_one_line_per_row() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rows.csv");
        std::fs::write(&file, "\"a \"\"b\"\"\",1\n\"c\",\n").unwrap();
        one_line_per_row(&file, &json!({})).unwrap();
        for broken in ["\"a\",1\n\"b\nc\",2\n", "\"a\r\nb\",1\n"] {
            std::fs::write(&file, broken).unwrap();
            let err = one_line_per_row(&file, &json!({})).unwrap_err();
            assert!(
                err.to_string().contains("line break inside a quoted field"),
                "{err}"
            );
        }
    }
}
