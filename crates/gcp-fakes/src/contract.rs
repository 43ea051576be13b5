//! Google's discovery documents as a contract: which methods exist, their
//! HTTP verb, path template and query parameters, and the JSON schema of
//! every request and response body. The fake checks each request our
//! clients send against it, and each answer it gives.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

use crate::server::Request;

pub struct Discovery {
    pub name: String,
    doc: Value,
    methods: Vec<MethodSpec>,
}

#[derive(Debug)]
pub struct MethodSpec {
    pub id: String,
    http_method: String,
    /// `flatPath` split on `/`, under `servicePath`.
    segments: Vec<String>,
    parameters: Map<String, Value>,
    request: Option<String>,
    pub response: Option<String>,
}

impl Discovery {
    /// Loads `<documents>/<name>.json`, e.g. `dataproc.v1` or `bigquery.v2`.
    pub fn load(documents: &Path, name: &str) -> Result<Discovery> {
        let path = documents.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read Google's discovery document {}\n\
                 hint: install google-api-python-client in the test venv",
                path.display()
            )
        })?;
        let doc: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let service_path = doc["servicePath"].as_str().unwrap_or("").to_owned();
        let mut methods = Vec::new();
        collect(&doc["resources"], &service_path, &mut methods);
        if methods.is_empty() {
            bail!("{} has no methods", path.display());
        }
        Ok(Discovery {
            name: name.to_owned(),
            doc,
            methods,
        })
    }

    /// The method `req` calls, or why it matches none.
    pub fn find(&self, req: &Request) -> Result<&MethodSpec, String> {
        let path = req.path.trim_start_matches('/');
        let segments: Vec<&str> = path.split('/').collect();
        let mut candidates: Vec<&MethodSpec> = self
            .methods
            .iter()
            .filter(|m| m.http_method == req.method && path_matches(&m.segments, &segments))
            .collect();
        // A literal beats a variable: `jobs:submit` over `jobs/{jobId}`-like shapes.
        candidates.sort_by_key(|m| {
            std::cmp::Reverse(
                m.segments
                    .iter()
                    .filter(|s| !s.starts_with('{'))
                    .map(String::len)
                    .sum::<usize>(),
            )
        });
        candidates.first().copied().ok_or_else(|| {
            format!(
                "{} {} matches no method of {}",
                req.method, req.path, self.name
            )
        })
    }

    /// Checks the request against its method: parameters and body.
    pub fn check_request(&self, req: &Request) -> Result<&MethodSpec, String> {
        let method = self.find(req)?;
        let globals = self.doc["parameters"].as_object().unwrap();
        let int_enums = int_enums(req)?;
        for (key, value) in &req.query {
            if key == "$alt" {
                continue;
            }
            let unlisted = unlisted_parameter(&method.id, key);
            let spec = method
                .parameters
                .get(key)
                .filter(|p| p["location"] == "query")
                .or_else(|| globals.get(key))
                .or(unlisted.as_ref())
                .ok_or_else(|| format!("{}: unknown query parameter `{key}`", method.id))?;
            check_parameter(spec, value)
                .map_err(|e| format!("{}: query parameter {key}: {e}", method.id))?;
        }
        for (key, spec) in &method.parameters {
            if spec["location"] == "query" && spec["required"] == true && req.param(key).is_none() {
                return Err(format!(
                    "{}: required query parameter {key} is missing",
                    method.id
                ));
            }
        }
        match (&method.request, req.body.is_empty()) {
            (Some(schema), true) => {
                return Err(format!("{}: no body, expected a {schema}", method.id));
            }
            (None, false) => {
                return Err(format!(
                    "{}: a body was sent to a method that takes none",
                    method.id
                ));
            }
            (Some(schema), false) => {
                let body: Value = serde_json::from_slice(&req.body)
                    .map_err(|e| format!("{}: the body is not JSON: {e}", method.id))?;
                let mode = Mode {
                    response: false,
                    int_enums,
                };
                self.check_value(&Value::String(schema.clone()), &body, schema, mode)
                    .map_err(|e| format!("{}: {e}", method.id))?;
            }
            (None, true) => {}
        }
        Ok(method)
    }

    /// Checks one of our own answers against the method's response schema.
    pub fn check_response(&self, method: &MethodSpec, body: &Value) -> Result<(), String> {
        match &method.response {
            Some(schema) => {
                let mode = Mode {
                    response: true,
                    int_enums: false,
                };
                self.check_value(&Value::String(schema.clone()), body, schema, mode)
            }
            None => Ok(()),
        }
    }

    /// `schema` is a schema object, or a schema's name as a JSON string.
    fn check_value(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        mode: Mode,
    ) -> Result<(), String> {
        let response = mode.response;
        if let Some(name) = schema.as_str().or_else(|| schema["$ref"].as_str()) {
            let resolved = &self.doc["schemas"][name];
            if resolved.is_null() {
                return Err(format!("{at}: unknown schema {name}"));
            }
            return self.check_value(resolved, value, at, mode);
        }
        if value.is_null() {
            return if response {
                Ok(())
            } else {
                Err(format!("{at}: null sent"))
            };
        }
        let kind = schema["type"].as_str().unwrap_or("any");
        match kind {
            "object" => {
                let object = value
                    .as_object()
                    .ok_or_else(|| format!("{at}: expected an object, got {value}"))?;
                let properties = schema["properties"].as_object();
                let additional = &schema["additionalProperties"];
                for (key, field) in object {
                    let at = format!("{at}.{key}");
                    match properties.and_then(|p| p.get(key)) {
                        Some(spec) => {
                            if !response && spec["readOnly"] == true {
                                return Err(format!("{at}: output-only field sent"));
                            }
                            self.check_value(spec, field, &at, mode)?;
                        }
                        None if !additional.is_null() => {
                            self.check_value(additional, field, &at, mode)?
                        }
                        None if properties.is_none() => {}
                        None => return Err(format!("{at}: unknown field")),
                    }
                }
                Ok(())
            }
            "array" => {
                let items = value
                    .as_array()
                    .ok_or_else(|| format!("{at}: expected an array, got {value}"))?;
                for (i, item) in items.iter().enumerate() {
                    self.check_value(&schema["items"], item, &format!("{at}[{i}]"), mode)?;
                }
                Ok(())
            }
            "string" if mode.int_enums && value.is_number() && schema["enum"].is_array() => {
                check_int_enum(schema, value).map_err(|e| format!("{at}: {e}"))
            }
            "string" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| format!("{at}: expected a string, got {value}"))?;
                check_string(schema, text).map_err(|e| format!("{at}: {e}"))
            }
            "integer" => match value.as_i64().or_else(|| value.as_u64().map(|u| u as i64)) {
                Some(_) => Ok(()),
                None => Err(format!("{at}: expected an integer, got {value}")),
            },
            "number" => match value {
                Value::Number(_) => Ok(()),
                _ => Err(format!("{at}: expected a number, got {value}")),
            },
            "boolean" => match value {
                Value::Bool(_) => Ok(()),
                _ => Err(format!("{at}: expected true or false, got {value}")),
            },
            "any" => Ok(()),
            other => Err(format!(
                "{at}: the document has a type {other} this checker does not know"
            )),
        }
    }
}

/// A query parameter Google's own client library sends, and the service
/// takes, that the method's discovery document does not list, with the
/// values it takes. One: google-cloud-bigquery's `Client.get_job` (which
/// `job.result()` polls with) sends `projection=full` to `jobs.get`
/// (python-bigquery, google/cloud/bigquery/client.py, `get_job`), the
/// parameter and values `jobs.list` documents
/// (https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/list).
fn unlisted_parameter(method: &str, key: &str) -> Option<Value> {
    match (method, key) {
        ("bigquery.jobs.get", "projection") => Some(serde_json::json!({
            "type": "string",
            "location": "query",
            "enum": ["full", "minimal"],
        })),
        _ => None,
    }
}

/// How a body is checked: as a request or as our own answer, and whether
/// the request asked for integer enums.
#[derive(Debug, Clone, Copy)]
struct Mode {
    response: bool,
    int_enums: bool,
}

/// Whether `req` asked for integer enums, or why its `$alt` is wrong.
/// `$alt` is the system parameter `alt` under the name the REST transports
/// of Google's generated (GAPIC) clients send, and `json;enum-encoding=int`
/// asks for enums as their numbers in the JSON mapping of the proto
/// (https://cloud.google.com/apis/docs/system-parameters, HTTP/JSON
/// transcoding in https://google.aip.dev/127). Only the JSON forms exist
/// over REST; `alt` and `$alt` together are one parameter sent twice.
fn int_enums(req: &Request) -> Result<bool, String> {
    let alts: Vec<&str> = req
        .query
        .iter()
        .filter(|(k, _)| k == "$alt")
        .map(|(_, v)| v.as_str())
        .collect();
    match alts.as_slice() {
        [] => Ok(false),
        [_] if req.param("alt").is_some() => Err("both `alt` and `$alt` were sent".into()),
        ["json"] => Ok(false),
        ["json;enum-encoding=int"] => Ok(true),
        [other] => Err(format!(
            "`$alt={other}` is not `json` or `json;enum-encoding=int`"
        )),
        _ => Err("`$alt` was sent more than once".into()),
    }
}

/// An enum sent as its number (`$alt=json;enum-encoding=int`). A
/// discovery document lists an enum's names, not their numbers, so the
/// number must at least be one of as many as there are names: proto enum
/// numbers are non-negative here, and the generated enums this project's
/// requests use number their values 0, 1, 2, ... in order.
fn check_int_enum(schema: &Value, value: &Value) -> Result<(), String> {
    let count = schema["enum"].as_array().map_or(0, Vec::len);
    match value.as_u64() {
        Some(n) if (n as usize) < count => Ok(()),
        _ => Err(format!(
            "{value} is not the number of one of the {count} values of this enum"
        )),
    }
}

fn check_string(schema: &Value, text: &str) -> Result<(), String> {
    if let Some(values) = schema["enum"].as_array()
        && !values.iter().any(|v| v == text)
    {
        return Err(format!("`{text}` is not one of {values:?}"));
    }
    match schema["format"].as_str() {
        Some("int64") if text.parse::<i64>().is_err() => Err(format!("`{text}` is not an int64")),
        Some("uint64") if text.parse::<u64>().is_err() => Err(format!("`{text}` is not a uint64")),
        Some("google-duration")
            if !(text.ends_with('s') && text[..text.len() - 1].parse::<f64>().is_ok()) =>
        {
            Err(format!("`{text}` is not a duration such as `600s`"))
        }
        _ => Ok(()),
    }
}

fn check_parameter(spec: &Value, value: &str) -> Result<(), String> {
    match spec["type"].as_str() {
        Some("integer") if value.parse::<i64>().is_err() => {
            Err(format!("`{value}` is not an integer"))
        }
        Some("boolean") if value != "true" && value != "false" => {
            Err(format!("`{value}` is not a boolean"))
        }
        Some("string") => check_string(spec, value),
        _ => Ok(()),
    }
}

fn collect(resources: &Value, service_path: &str, out: &mut Vec<MethodSpec>) {
    let Some(resources) = resources.as_object() else {
        return;
    };
    for resource in resources.values() {
        if let Some(methods) = resource["methods"].as_object() {
            for method in methods.values() {
                let path = method["flatPath"]
                    .as_str()
                    .or(method["path"].as_str())
                    .unwrap();
                let full = format!("{service_path}{path}");
                out.push(MethodSpec {
                    id: method["id"].as_str().unwrap().to_owned(),
                    http_method: method["httpMethod"].as_str().unwrap().to_owned(),
                    segments: full.split('/').map(str::to_owned).collect(),
                    parameters: method["parameters"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    request: method["request"]["$ref"].as_str().map(str::to_owned),
                    response: method["response"]["$ref"].as_str().map(str::to_owned),
                });
            }
        }
        collect(&resource["resources"], service_path, out);
    }
}

/// `{var}` matches one non-empty segment; `{var}:verb` one ending in `:verb`.
fn path_matches(template: &[String], path: &[&str]) -> bool {
    template.len() == path.len()
        && template.iter().zip(path).all(|(t, p)| {
            if !t.starts_with('{') {
                return t == p;
            }
            match t.split_once("}:") {
                Some((_, verb)) => p
                    .strip_suffix(&format!(":{verb}"))
                    .is_some_and(|v| !v.is_empty() && !v.contains(':')),
                None => !p.is_empty() && !p.contains(':'),
            }
        })
}

#[test]
fn the_checker_rejects_what_google_would() {
    let documents = crate::venv::documents_dir().unwrap();
    let dataproc = Discovery::load(&documents, "dataproc.v1").unwrap();
    let request = |method: &str, path: &str, query: &[(&str, &str)], body: Value| Request {
        method: method.into(),
        path: path.into(),
        query: query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        headers: Vec::new(),
        body: if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        },
    };
    let ok = request(
        "POST",
        "/v1/projects/p/regions/r/jobs:submit",
        &[],
        serde_json::json!({"job": {"placement": {"clusterName": "c"}, "pysparkJob": {"mainPythonFileUri": "gs://b/x.py"}}}),
    );
    assert_eq!(
        dataproc.check_request(&ok).unwrap().id,
        "dataproc.projects.regions.jobs.submit"
    );
    let cancel = request(
        "POST",
        "/v1/projects/p/regions/r/jobs/j1:cancel",
        &[],
        serde_json::json!({}),
    );
    assert_eq!(
        dataproc.check_request(&cancel).unwrap().id,
        "dataproc.projects.regions.jobs.cancel"
    );

    let cases = [
        (
            request(
                "POST",
                "/v1/projects/p/regions/r/jobs:submit",
                &[],
                serde_json::json!({"job": {"pysparkJobs": {}}}),
            ),
            "unknown field",
        ),
        (
            request(
                "POST",
                "/v1/projects/p/regions/r/jobs:submit",
                &[],
                serde_json::json!({"job": {"status": {"state": "DONE"}}}),
            ),
            "output-only",
        ),
        (
            request(
                "POST",
                "/v1/projects/p/regions/r/jobs:submit",
                &[],
                serde_json::json!({"job": {"placement": {"clusterName": 3}}}),
            ),
            "expected a string",
        ),
        (
            request(
                "GET",
                "/v1/projects/p/regions/r/clusters",
                &[("pageSize", "ten")],
                Value::Null,
            ),
            "not an integer",
        ),
        (
            request(
                "GET",
                "/v1/projects/p/regions/r/clusters",
                &[("labelFilter", "x")],
                Value::Null,
            ),
            "unknown query parameter",
        ),
        (
            request(
                "PATCH",
                "/v1/projects/p/regions/r/jobs:submit",
                &[],
                Value::Null,
            ),
            "matches no method",
        ),
        (
            request(
                "POST",
                "/v1/projects/p/regions/r/clusters",
                &[],
                serde_json::json!({"clusterName": "c", "config": {"lifecycleConfig": {"idleDeleteTtl": "ten minutes"}}}),
            ),
            "duration",
        ),
    ];
    for (req, want) in cases {
        let err = dataproc
            .check_request(&req)
            .err()
            .unwrap_or_else(|| panic!("{} {} passed", req.method, req.path));
        assert!(err.contains(want), "`{err}` does not say {want}");
    }
    let bigquery = Discovery::load(&documents, "bigquery.v2").unwrap();
    let bad_enum = request(
        "POST",
        "/bigquery/v2/projects/p/queries",
        &[],
        serde_json::json!({"query": "SELECT 1", "jobCreationMode": "JOB_CREATION_SOMETIMES"}),
    );
    assert!(
        bigquery
            .check_request(&bad_enum)
            .unwrap_err()
            .contains("not one of")
    );
    // `projection` on jobs.get, as google-cloud-bigquery sends it; nowhere else.
    let get_job = |path: &str, projection: &str| {
        request(
            "GET",
            path,
            &[("projection", projection), ("location", "US")],
            Value::Null,
        )
    };
    let job = "/bigquery/v2/projects/p/jobs/j1";
    assert!(bigquery.check_request(&get_job(job, "full")).is_ok());
    assert!(
        bigquery
            .check_request(&get_job(job, "everything"))
            .unwrap_err()
            .contains("not one of")
    );
    assert!(
        bigquery
            .check_request(&get_job(
                "/bigquery/v2/projects/p/datasets/d/tables/t",
                "full"
            ))
            .unwrap_err()
            .contains("unknown query parameter `projection`")
    );
}

/// The REST transports of Google's generated clients send `$alt=json;
/// enum-encoding=int` and enums as numbers: accepted as such, and a number
/// is still refused when not asked for, or when no value has it.
#[test]
fn integer_enums_pass_only_when_asked_for() {
    let documents = crate::venv::documents_dir().unwrap();
    let dataproc = Discovery::load(&documents, "dataproc.v1").unwrap();
    let create = |alt: &[&str], access: Value| Request {
        method: "POST".into(),
        path: "/v1/projects/p/regions/r/clusters".into(),
        query: alt
            .iter()
            .map(|v| ("$alt".to_owned(), (*v).to_owned()))
            .chain([("requestId".to_owned(), "r1".to_owned())])
            .collect(),
        headers: Vec::new(),
        body: serde_json::to_vec(&serde_json::json!({
            "clusterName": "c",
            "config": {"gceClusterConfig": {"privateIpv6GoogleAccess": access}},
        }))
        .unwrap(),
    };
    let int = ["json;enum-encoding=int"];
    for (req, ok) in [
        (create(&int, 2.into()), true),
        (create(&int, "OUTBOUND".into()), true),
        (create(&["json"], "OUTBOUND".into()), true),
        (create(&[], "OUTBOUND".into()), true),
    ] {
        assert_eq!(dataproc.check_request(&req).is_ok(), ok, "{:?}", req.query);
    }
    for (req, want) in [
        (create(&["json"], 2.into()), "expected a string"),
        (create(&[], 2.into()), "expected a string"),
        (
            create(&int, 4.into()),
            "not the number of one of the 4 values",
        ),
        (create(&int, (-1).into()), "not the number of one"),
        (create(&int, "OUTWARD".into()), "not one of"),
        (create(&["proto"], "OUTBOUND".into()), "is not `json`"),
        (
            create(&["json", "json"], "OUTBOUND".into()),
            "more than once",
        ),
    ] {
        let err = dataproc.check_request(&req).err().unwrap_or_else(|| {
            panic!(
                "{:?} {} passed",
                req.query,
                String::from_utf8_lossy(&req.body)
            )
        });
        assert!(err.contains(want), "`{err}` does not say {want}");
    }
    let mut both = create(&int, 2.into());
    both.query.push(("alt".into(), "json".into()));
    assert!(dataproc.check_request(&both).unwrap_err().contains("both"));
}
