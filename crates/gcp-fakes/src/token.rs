//! The OAuth 2.0 token endpoint a service-account key's `token_uri`
//! points at in the rehearsal: it takes the JWT-bearer grant Google's
//! libraries send, checks its shape and claims, and hands out the one
//! token the stand-ins accept. It also plays the IAM Credentials API's
//! `generateAccessToken`, for impersonation, and the `tokeninfo` endpoint.
//! When the stand-ins enforce IAM, every token names a principal: the
//! key's `client_email`, the user a refresh token stands for, or the
//! account a caller with Token Creator on it impersonates.

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

/// The principal a token request is granted for, or why it is refused.
fn check(req: &Request, iam: Option<&crate::iam::Iam>) -> Result<String, String> {
    if (req.method.as_str(), req.path.as_str()) != ("POST", "/token") {
        return Err(format!(
            "{} {} is not the token endpoint",
            req.method, req.path
        ));
    }
    let form = form(&req.body);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    // An `authorized_user` file's refresh token (Google's OAuth 2.0
    // refresh grant, https://developers.google.com/identity/protocols/oauth2/web-server#offline).
    if field("grant_type").as_deref() == Some("refresh_token") {
        let token = field("refresh_token").ok_or("no refresh_token")?;
        return iam
            .and_then(|iam| iam.refresh_token_member(&token))
            .ok_or_else(|| "unknown refresh token".to_owned());
    }
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
    let email = claims["iss"].as_str().ok_or("`iss` is not a string")?;
    Ok(format!("serviceAccount:{email}"))
}

/// `generateAccessToken` for the account in `path`: the caller needs
/// `iam.serviceAccounts.getAccessToken` on it, which Token Creator grants
/// (https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken).
fn impersonate(front: &Front, req: &Request) -> Response {
    let Some(iam) = front.iam() else {
        return Response::json(
            200,
            &json!({"accessToken": TOKEN, "expireTime": "2100-01-01T00:00:00Z"}),
        );
    };
    let caller = match front.caller(req) {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let email = req
        .path
        .rsplit('/')
        .next()
        .and_then(|s| s.strip_suffix(":generateAccessToken"))
        .unwrap_or_default()
        .to_owned();
    let need = crate::iam::Need {
        any_of: vec!["iam.serviceAccounts.getAccessToken"],
        on: crate::iam::Resource::ServiceAccount(email.clone()),
        who: None,
    };
    if let Some((code, body)) = front.authorize(req, &caller, "iamcredentials", &[need]) {
        return Response::json(code, &body);
    }
    Response::json(
        200,
        &json!({"accessToken": iam.mint(&format!("serviceAccount:{email}")), "expireTime": "2100-01-01T00:00:00Z"}),
    )
}

/// Google's `tokeninfo`: whose token it is
/// (https://developers.google.com/identity/protocols/oauth2/openid-connect#validatinganidtoken).
fn token_info(front: &Front, req: &Request) -> Response {
    let member = front
        .iam()
        .zip(req.param("access_token"))
        .and_then(|(iam, token)| iam.who(token));
    match member {
        Some(member) => {
            let email = member.split_once(':').map_or(member.as_str(), |(_, e)| e);
            Response::json(
                200,
                &json!({"email": email, "email_verified": "true", "expires_in": "3599"}),
            )
        }
        None => Response::json(
            400,
            &json!({"error": "invalid_token", "error_description": "Invalid Value"}),
        ),
    }
}

pub fn handler(front: Front) -> crate::server::Handler {
    Arc::new(move |req: Request| {
        let front = front.clone();
        Box::pin(async move {
            if req.path.ends_with(":generateAccessToken") {
                return impersonate(&front, &req);
            }
            if req.path == "/tokeninfo" {
                return token_info(&front, &req);
            }
            let iam = front.iam();
            match check(&req, iam.as_ref()) {
                Ok(member) => Response::json(
                    200,
                    &json!({
                        "access_token": iam.map_or(TOKEN.to_owned(), |iam| iam.mint(&member)),
                        "token_type": "Bearer",
                        "expires_in": 3600,
                    }),
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
