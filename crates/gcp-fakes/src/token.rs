//! The OAuth 2.0 token endpoint a service-account key's `token_uri`
//! points at in the rehearsal: it takes the JWT-bearer grant Google's
//! libraries send, checks its shape and claims, and hands out the one
//! token the stand-ins accept. It also plays the IAM Credentials API's
//! `generateAccessToken`, for impersonation.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::front::{Front, TOKEN};
use crate::server::{Request, Response, decode};

fn form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k, true), decode(v, true)))
        .collect()
}

/// Why a token request is refused, if it is.
fn check(req: &Request) -> Result<(), String> {
    if (req.method.as_str(), req.path.as_str()) != ("POST", "/token") {
        return Err(format!(
            "{} {} is not the token endpoint",
            req.method, req.path
        ));
    }
    let form = form(&req.body);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if field("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return Err(format!(
            "grant_type {:?} is not the JWT-bearer grant",
            field("grant_type")
        ));
    }
    let jwt = field("assertion").ok_or("no assertion")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return Err("the assertion is not a JWT".into());
    }
    let claims: Value = URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the JWT's claims are not base64url JSON")?;
    for claim in ["iss", "aud", "exp", "iat"] {
        if claims[claim].is_null() {
            return Err(format!("the JWT has no `{claim}` claim"));
        }
    }
    if claims["scope"].is_null() {
        return Err("the JWT asks for no scope".into());
    }
    Ok(())
}

pub fn handler(front: Front) -> crate::server::Handler {
    Arc::new(move |req: Request| {
        let front = front.clone();
        Box::pin(async move {
            if req.path.ends_with(":generateAccessToken") {
                return Response::json(
                    200,
                    &json!({"accessToken": TOKEN, "expireTime": "2100-01-01T00:00:00Z"}),
                );
            }
            match check(&req) {
                Ok(()) => Response::json(
                    200,
                    &json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}),
                ),
                Err(why) => {
                    front.violation(format!("token endpoint: {why}"));
                    Response::json(
                        400,
                        &json!({"error": "invalid_grant", "error_description": why}),
                    )
                }
            }
        })
    })
}
