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

/// Whether a bearer token is a JWT (three base64url parts) rather than an
/// opaque access token.
pub fn is_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

/// The longest lifetime Google accepts for a self-signed JWT: one hour.
const JWT_MAX_LIFETIME: i64 = 3600;

/// The member a self-signed JWT access token stands for, or why it is
/// refused. A service-account key may sign its own access token instead of
/// trading a JWT-bearer grant for one (AIP-4111,
/// https://google.aip.dev/auth/4111): RS256 over the header and claims with
/// the key (`kid` its id), `iss` and `sub` the account's email, `iat` and
/// `exp` at most an hour apart, and either `aud` (the API's URL) or `scope`,
/// never both. The signature is checked with `public_key` (PKCS#1 DER):
/// in the rehearsal, the TEST-ONLY key's (`crate::stack::TEST_PUBLIC_KEY`).
pub fn self_signed(jwt: &str, public_key: &[u8], now: i64) -> Result<String, String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("the self-signed JWT does not have three parts".into());
    };
    let part = |text: &str, what: &str| -> Result<Value, String> {
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| format!("the self-signed JWT's {what} is not base64url JSON"))
    };
    let head = part(header, "header")?;
    if head["alg"] != "RS256" {
        return Err(format!(
            "the self-signed JWT's alg is {}, not RS256",
            head["alg"]
        ));
    }
    if !head["kid"].is_string() {
        return Err("the self-signed JWT's header names no key (`kid`)".into());
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature.trim_end_matches('='))
        .map_err(|_| "the self-signed JWT's signature is not base64url".to_owned())?;
    let signed = &jwt[..header.len() + 1 + claims.len()];
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    )
    .verify(signed.as_bytes(), &signature)
    .map_err(|_| "the self-signed JWT's signature does not verify with the account's key")?;
    let claims = part(claims, "claims")?;
    let iss = claims["iss"]
        .as_str()
        .ok_or("the self-signed JWT has no `iss`")?;
    if claims["sub"].as_str() != Some(iss) {
        return Err(format!(
            "the self-signed JWT's `sub` {} is not its `iss` {iss}",
            claims["sub"]
        ));
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err("the self-signed JWT needs numeric `iat` and `exp`".into());
    };
    if exp <= now {
        return Err(format!("the self-signed JWT expired at {exp} (now {now})"));
    }
    if exp - iat > JWT_MAX_LIFETIME || iat > now + 300 {
        return Err(format!(
            "the self-signed JWT's lifetime {iat}..{exp} is longer than an hour or starts in the future"
        ));
    }
    match (claims.get("aud"), claims.get("scope")) {
        (Some(_), Some(_)) => Err("the self-signed JWT has both `aud` and `scope`".into()),
        (None, None) => Err("the self-signed JWT has neither `aud` nor `scope`".into()),
        _ => Ok(format!("serviceAccount:{iss}")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{TEST_KEY, TEST_PUBLIC_KEY};
    use base64::engine::general_purpose::STANDARD;

    /// Signs `claims` with the TEST-ONLY key, as google-auth signs a
    /// self-signed JWT.
    fn sign(claims: &Value) -> String {
        let der: String = TEST_KEY
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let key = ring::signature::RsaKeyPair::from_pkcs8(&STANDARD.decode(der).unwrap()).unwrap();
        let head = URL_SAFE_NO_PAD.encode(
            json!({"alg": "RS256", "typ": "JWT", "kid": "rehearsal-test-only"}).to_string(),
        );
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{head}.{body}");
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signed.as_bytes(),
            &mut signature,
        )
        .unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    const NOW: i64 = 1_800_000_000;
    const EMAIL: &str = "infra-pipeline@p.iam.gserviceaccount.com";

    fn claims(extra: Value) -> Value {
        let mut c = json!({"iss": EMAIL, "sub": EMAIL, "iat": NOW - 10, "exp": NOW + 3590});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    }

    #[test]
    fn a_self_signed_jwt_with_scope_or_audience_names_its_account() {
        for extra in [
            json!({"scope": "https://www.googleapis.com/auth/cloud-platform"}),
            json!({"aud": "https://dataproc.googleapis.com/"}),
        ] {
            let jwt = sign(&claims(extra));
            assert!(is_jwt(&jwt));
            assert_eq!(
                self_signed(&jwt, TEST_PUBLIC_KEY, NOW),
                Ok(format!("serviceAccount:{EMAIL}"))
            );
        }
        assert!(!is_jwt("ya29.rehearsal-1-abc"));
    }

    #[test]
    fn a_self_signed_jwt_google_would_refuse_is_refused() {
        let scope = json!({"scope": "https://www.googleapis.com/auth/cloud-platform"});
        let good = sign(&claims(scope.clone()));
        // Another account's claims under this signature.
        let parts: Vec<&str> = good.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            claims(json!({"iss": "x@p.iam.gserviceaccount.com", "sub": "x@p.iam.gserviceaccount.com", "scope": "s"}))
                .to_string(),
        );
        let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
        let cases = [
            (forged, "does not verify"),
            (
                sign(&claims(
                    json!({"scope": "s", "aud": "https://dataproc.googleapis.com/"}),
                )),
                "both `aud` and `scope`",
            ),
            (sign(&claims(json!({}))), "neither `aud` nor `scope`"),
            (
                sign(&claims(
                    json!({"scope": "s", "sub": "other@p.iam.gserviceaccount.com"}),
                )),
                "is not its `iss`",
            ),
            (
                sign(&claims(
                    json!({"scope": "s", "iat": NOW - 4000, "exp": NOW - 1}),
                )),
                "expired",
            ),
            (
                sign(&claims(
                    json!({"scope": "s", "iat": NOW - 10, "exp": NOW + 7200}),
                )),
                "longer than an hour",
            ),
        ];
        for (jwt, want) in cases {
            let err = self_signed(&jwt, TEST_PUBLIC_KEY, NOW).unwrap_err();
            assert!(err.contains(want), "`{err}` does not say {want}");
        }
    }
}
