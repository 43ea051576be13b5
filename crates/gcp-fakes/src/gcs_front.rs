//! Cloud Storage behind the same front as the other stand-ins.
//! fake-gcs-server checks no token, so without this every storage call
//! would pass, whoever made it. This proxy names the caller from its token,
//! checks the bucket permission the request needs (`iam::storage_required`),
//! and only then forwards the request, unchanged, to fake-gcs-server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;

use crate::front::Front;
use crate::server::{self, Request, Response};

/// Serves the proxy on `127.0.0.1:0`, in front of fake-gcs-server at `upstream`.
pub async fn serve(front: Front, upstream: String) -> Result<SocketAddr> {
    let client = reqwest::Client::new();
    server::serve_on(
        0,
        Arc::new(move |req: Request| {
            let front = front.clone();
            let upstream = upstream.clone();
            let client = client.clone();
            Box::pin(async move { handle(&front, &client, &upstream, req).await })
        }),
    )
    .await
}

async fn handle(front: &Front, client: &reqwest::Client, upstream: &str, req: Request) -> Response {
    // A resumable upload's session URI is its own credential
    // (https://cloud.google.com/storage/docs/resumable-uploads#session-uris).
    if req.param("upload_id").is_none() {
        let caller = match front.caller(&req) {
            Ok(caller) => caller,
            Err(refusal) => return refusal,
        };
        if front.iam().is_some() {
            let Some(needs) = crate::iam::storage_required(&req.method, &req.path) else {
                front.violation(format!(
                    "{} {}: a storage request no IAM rule covers",
                    req.method, req.path
                ));
                return Response::empty(403);
            };
            if let Some((code, body)) = front.authorize(&req, &caller, "storage", &needs) {
                return Response::json(code, &body);
            }
        }
    }
    match forward(client, upstream, &req).await {
        Ok(response) => response,
        Err(e) => Response::json(
            502,
            &serde_json::json!({"error": {"code": 502, "message": format!("the proxy could not reach fake-gcs-server: {e}")}}),
        ),
    }
}

async fn forward(client: &reqwest::Client, upstream: &str, req: &Request) -> Result<Response> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes())?;
    let mut url = reqwest::Url::parse(upstream)?;
    url.set_path(&encode_path(&req.method, &req.path));
    if !req.query.is_empty() {
        url.query_pairs_mut().extend_pairs(&req.query);
    }
    let mut request = client.request(method, url).body(req.body.clone());
    for (name, value) in &req.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await?;
    let mut response = Response::empty(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if matches!(
            name.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            response = response.header(name.as_str(), value);
        }
    }
    response.body = answer.bytes().await?.to_vec();
    Ok(response)
}

/// The decoded path encoded again, with the object name as one segment
/// (`/` in it as `%2F`), the way Google's clients send it.
fn encode_path(method: &str, path: &str) -> String {
    let Some((head, object)) = path.split_once("/o/") else {
        return path.to_owned();
    };
    let (object, tail) = match object.strip_suffix("/compose") {
        Some(object) if method == "POST" => (object, "/compose"),
        _ => (object, ""),
    };
    let encoded: String = object
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{head}/o/{encoded}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_one_segment_again() {
        assert_eq!(
            encode_path("GET", "/storage/v1/b/raw/o/dir/a b.csv"),
            "/storage/v1/b/raw/o/dir%2Fa%20b.csv"
        );
        assert_eq!(
            encode_path("POST", "/storage/v1/b/s/o/x/y.csv/compose"),
            "/storage/v1/b/s/o/x%2Fy.csv/compose"
        );
        assert_eq!(
            encode_path("POST", "/upload/storage/v1/b/s/o"),
            "/upload/storage/v1/b/s/o"
        );
    }
}
