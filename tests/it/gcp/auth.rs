//! Credentials: the JWT-bearer exchange of a service-account key against a
//! local token endpoint, token caching and refresh, the order of
//! Application Default Credentials, the metadata server, and impersonation.
//! The key in testdata/ is a throwaway made for these tests.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use infra::backend::gcp::auth::{
    AdcSources, CLOUD_PLATFORM, Impersonated, StaticToken, TokenSource, application_default,
};
use infra::backend::gcp::http::Clock;
use serde_json::{Value, json};

use super::fast_policy;
use gcp_fakes::server::{self, Request, Response, decode};

use gcp_fakes::stack::{TEST_KEY, TEST_PUBLIC_KEY};
const EMAIL: &str = "infra-test@test-project.iam.gserviceaccount.com";

/// A token endpoint that checks each JWT-bearer assertion and hands out
/// `token-1`, `token-2`, … valid for `expires_in` seconds.
async fn token_endpoint(expires_in: u64) -> (String, Arc<Mutex<Vec<Value>>>) {
    let claims = Arc::new(Mutex::new(Vec::new()));
    let seen = claims.clone();
    let addr = server::serve(Arc::new(move |req: Request| {
        let seen = seen.clone();
        Box::pin(async move {
            assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/token"));
            let form: Vec<(String, String)> = String::from_utf8(req.body)
                .unwrap()
                .split('&')
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (decode(k, true), decode(v, true))
                })
                .collect();
            let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
            assert_eq!(field("grant_type"), "urn:ietf:params:oauth:grant-type:jwt-bearer");
            let jwt = field("assertion");
            let parts: Vec<&str> = jwt.split('.').collect();
            assert_eq!(parts.len(), 3, "not a JWT: {jwt}");
            // yup-oauth2 pads its base64url; JWTs usually do not. Accept both.
            let b64 = |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).unwrap();
            let header: Value = serde_json::from_slice(&b64(parts[0])).unwrap();
            assert_eq!(header["alg"], "RS256");
            let signature = b64(parts[2]);
            ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, TEST_PUBLIC_KEY)
                .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
                .expect("the assertion is not signed by the test key");
            let claims: Value = serde_json::from_slice(&b64(parts[1])).unwrap();
            let mut seen = seen.lock().unwrap();
            seen.push(claims);
            Response::json(
                200,
                &json!({"access_token": format!("token-{}", seen.len()), "token_type": "Bearer", "expires_in": expires_in}),
            )
        })
    }))
    .await;
    (format!("http://{addr}/token"), claims)
}

fn key_file(dir: &std::path::Path, token_uri: &str) -> std::path::PathBuf {
    let path = dir.join("key.json");
    let key = json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "test-only",
        "private_key": TEST_KEY,
        "client_email": EMAIL,
        "client_id": "1",
        "token_uri": token_uri,
    });
    std::fs::write(&path, key.to_string()).unwrap();
    path
}

#[tokio::test]
async fn a_service_account_key_is_exchanged_for_a_cached_token() {
    let (token_uri, claims) = token_endpoint(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let sources = AdcSources {
        credentials_file: Some(key_file(dir.path(), &token_uri)),
        gcloud_file: Some(dir.path().join("absent.json")),
        metadata_url: None,
        quota_project: None,
    };
    let source = application_default(&sources).await.unwrap();
    assert!(source.description.contains(EMAIL), "{}", source.description);
    assert_eq!(source.token().await.unwrap().as_deref(), Some("token-1"));
    assert_eq!(
        source.token().await.unwrap().as_deref(),
        Some("token-1"),
        "the token was not cached"
    );
    let claims = claims.lock().unwrap();
    assert_eq!(claims.len(), 1);
    let c = &claims[0];
    assert_eq!(c["iss"], EMAIL);
    assert_eq!(c["aud"], token_uri.as_str());
    assert_eq!(c["scope"], CLOUD_PLATFORM);
    let lifetime = c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap();
    assert!((0..=3600).contains(&lifetime), "{lifetime}");
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed() {
    // yup-oauth2 treats a token as expired a minute before its end, so a
    // 30-second token is stale at once and every call fetches anew.
    let (token_uri, claims) = token_endpoint(30).await;
    let dir = tempfile::tempdir().unwrap();
    let sources = AdcSources {
        credentials_file: Some(key_file(dir.path(), &token_uri)),
        ..AdcSources::default()
    };
    let source = application_default(&sources).await.unwrap();
    assert_eq!(source.token().await.unwrap().as_deref(), Some("token-1"));
    assert_eq!(source.token().await.unwrap().as_deref(), Some("token-2"));
    assert_eq!(claims.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn adc_prefers_the_env_file_then_gcloud_then_the_metadata_server() {
    let dir = tempfile::tempdir().unwrap();
    let gcloud = dir.path().join("application_default_credentials.json");
    std::fs::write(
        &gcloud,
        json!({"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}).to_string(),
    )
    .unwrap();
    let both = AdcSources {
        credentials_file: Some(key_file(dir.path(), "http://127.0.0.1:9/token")),
        gcloud_file: Some(gcloud.clone()),
        metadata_url: None,
        quota_project: None,
    };
    assert!(
        application_default(&both)
            .await
            .unwrap()
            .description
            .contains("service account")
    );
    let gcloud_only = AdcSources {
        credentials_file: None,
        ..both
    };
    let description = application_default(&gcloud_only).await.unwrap().description;
    assert!(
        description.contains("user credentials")
            && description.contains("application_default_credentials.json"),
        "{description}"
    );

    let unknown = dir.path().join("odd.json");
    std::fs::write(&unknown, r#"{"type": "impersonated_service_account"}"#).unwrap();
    let err = application_default(&AdcSources {
        credentials_file: Some(unknown),
        ..AdcSources::default()
    })
    .await
    .err()
    .unwrap();
    assert!(
        format!("{err:#}").contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{err:#}"
    );

    // Neither file: the metadata server, asked with its flavour header.
    let addr = server::serve(Arc::new(|req: Request| {
        Box::pin(async move {
            assert_eq!(req.header("metadata-flavor"), Some("Google"));
            Response::json(200, &json!({"access_token": "from-metadata", "token_type": "Bearer", "expires_in": 3600}))
        })
    }))
    .await;
    let metadata = AdcSources {
        credentials_file: None,
        gcloud_file: Some(dir.path().join("absent.json")),
        metadata_url: Some(format!(
            "http://{addr}/computeMetadata/v1/instance/service-accounts/default/token"
        )),
        quota_project: None,
    };
    let source = application_default(&metadata).await.unwrap();
    assert!(source.description.contains("metadata server"));
    assert_eq!(
        source.token().await.unwrap().as_deref(),
        Some("from-metadata")
    );
}

#[tokio::test]
async fn impersonation_mints_caches_and_refreshes_by_the_clock() {
    let now = Arc::new(Mutex::new(
        DateTime::parse_from_rfc3339("2026-11-24T21:40:00Z")
            .unwrap()
            .with_timezone(&Utc),
    ));
    let clock_now = now.clone();
    let clock: Clock = Arc::new(move || *clock_now.lock().unwrap());
    let minted = Arc::new(Mutex::new(0));
    let (count, server_now) = (minted.clone(), now.clone());
    let addr = server::serve(Arc::new(move |req: Request| {
        let (count, server_now) = (count.clone(), server_now.clone());
        Box::pin(async move {
            assert_eq!(req.path, format!("/v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken"));
            assert_eq!(req.header("authorization"), Some("Bearer caller-token"));
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(body["scope"], json!([CLOUD_PLATFORM]));
            let mut n = count.lock().unwrap();
            *n += 1;
            let expires = *server_now.lock().unwrap() + TimeDelta::hours(1);
            Response::json(200, &json!({"accessToken": format!("sa-token-{n}"), "expireTime": expires.to_rfc3339()}))
        })
    }))
    .await;
    let source = Impersonated::new(
        Arc::new(StaticToken::new("caller-token")),
        EMAIL,
        &format!("http://{addr}"),
        fast_policy(),
        clock,
    )
    .unwrap();
    assert_eq!(source.token().await.unwrap().as_deref(), Some("sa-token-1"));
    *now.lock().unwrap() += TimeDelta::minutes(50);
    assert_eq!(
        source.token().await.unwrap().as_deref(),
        Some("sa-token-1"),
        "not cached"
    );
    *now.lock().unwrap() += TimeDelta::minutes(6);
    assert_eq!(
        source.token().await.unwrap().as_deref(),
        Some("sa-token-2"),
        "not refreshed near expiry"
    );
    assert_eq!(*minted.lock().unwrap(), 2);
}

/// `gcloud auth application-default login --impersonate-service-account`
/// writes this type; it was refused before (review finding).
#[tokio::test]
async fn an_impersonated_service_account_adc_file_mints_the_accounts_token() {
    let (token_uri, claims) = token_endpoint(3600).await;
    let target = "pipeline@test-project.iam.gserviceaccount.com";
    let addr = server::serve(Arc::new(move |req: Request| {
        Box::pin(async move {
            assert_eq!(
                req.path,
                format!("/v1/projects/-/serviceAccounts/{target}:generateAccessToken")
            );
            // The source credentials' own token pays for the new one.
            assert_eq!(req.header("authorization"), Some("Bearer token-1"));
            Response::json(
                200,
                &json!({"accessToken": "impersonated-token", "expireTime": (Utc::now() + TimeDelta::hours(1)).to_rfc3339()}),
            )
        })
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let source: Value =
        serde_json::from_str(&std::fs::read_to_string(key_file(dir.path(), &token_uri)).unwrap())
            .unwrap();
    let adc = dir.path().join("application_default_credentials.json");
    std::fs::write(
        &adc,
        json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": format!("http://{addr}/v1/projects/-/serviceAccounts/{target}:generateAccessToken"),
            "delegates": [],
            "source_credentials": source,
        })
        .to_string(),
    )
    .unwrap();
    let sources = AdcSources {
        gcloud_file: Some(adc),
        ..AdcSources::default()
    };
    let credentials = application_default(&sources).await.unwrap();
    assert!(
        credentials.description.contains(target) && credentials.description.contains(EMAIL),
        "{}",
        credentials.description
    );
    assert_eq!(
        credentials.token().await.unwrap().as_deref(),
        Some("impersonated-token")
    );
    assert_eq!(claims.lock().unwrap().len(), 1);
}
