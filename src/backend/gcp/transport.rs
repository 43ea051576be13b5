//! Failures on the way to Google (DNS, connect, TLS, timeout), told apart
//! from Google's answers.
//!
//! A request that never reached the API is not a permission problem, and
//! the error chains of reqwest, hyper and yup-oauth2 repeat themselves
//! ("Hyper error: client error (Connect): … client error (Connect)"). So
//! such a failure becomes one line that names the host and what failed,
//! with a hint about the network, the endpoint or the proxy: never about
//! roles.

use std::error::Error;
use std::fmt;

/// What went wrong before any HTTP answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The host name does not resolve.
    Dns,
    /// The host resolved, and nothing listens on the port.
    Refused,
    /// Any other failure to open the connection (unreachable network, reset).
    Connect,
    /// The TLS handshake failed (a certificate, or a server that speaks no TLS).
    Tls,
    /// No answer in time.
    Timeout,
    /// The request was sent, and the connection broke.
    Other,
}

/// One transport failure, as the user reads it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: Kind,
    /// `host:port`, when known.
    pub host: Option<String>,
    /// The innermost cause's text ("Connection refused (os error 111)").
    pub detail: String,
}

impl Failure {
    /// The hint that fits the failure.
    pub fn hint(&self) -> String {
        let host = self.host.as_deref().unwrap_or("the endpoint");
        let google = self.host.as_deref().is_some_and(is_google);
        let endpoint = if google {
            String::new()
        } else {
            format!(
                "; {host} comes from the `endpoints.*` settings or the credentials file's token_uri: check them"
            )
        };
        let proxy = match proxy_variable() {
            Some(var) => format!("; requests go through the proxy that {var} names: check it"),
            None => "; behind a proxy, set HTTPS_PROXY".to_owned(),
        };
        match self.kind {
            Kind::Dns => format!(
                "this machine cannot resolve {host}: check its network connection and DNS{endpoint}{proxy}"
            ),
            Kind::Refused => format!("nothing accepts connections at {host}{endpoint}{proxy}"),
            Kind::Connect | Kind::Other => {
                format!("check this machine's network connection and firewall{endpoint}{proxy}")
            }
            Kind::Tls => format!(
                "the TLS handshake with {host} failed: an https:// URL must name a server that speaks TLS, and a proxy that inspects TLS breaks Google's certificates{endpoint}{proxy}"
            ),
            Kind::Timeout => format!(
                "the network or a firewall may be dropping the traffic to {host}{endpoint}{proxy}"
            ),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host.as_deref().unwrap_or("the endpoint");
        let what = match self.kind {
            Kind::Dns => format!("cannot resolve {host} (DNS)"),
            Kind::Refused => format!("cannot connect to {host}: connection refused"),
            Kind::Connect => format!("cannot connect to {host}"),
            Kind::Tls => format!("no TLS connection to {host}"),
            Kind::Timeout => format!("no answer from {host} in time"),
            Kind::Other => format!("the connection to {host} failed"),
        };
        // "connection refused" says all the OS error would.
        if self.kind == Kind::Refused {
            write!(f, "{what}\nhint: {}", self.hint())
        } else {
            write!(f, "{what}: {}\nhint: {}", self.detail, self.hint())
        }
    }
}

impl Error for Failure {}

fn is_google(host: &str) -> bool {
    let name = host.split(':').next().unwrap_or(host);
    name.ends_with(".googleapis.com") || name == "metadata.google.internal"
}

/// The proxy variable reqwest follows, by name only (its value may hold a password).
fn proxy_variable() -> Option<&'static str> {
    [
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ]
    .into_iter()
    .find(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

/// The transport failure in `err`'s chain, if it is one. `host` names the
/// endpoint when the errors don't (yup-oauth2's don't).
pub fn classify(err: &(dyn Error + 'static), host: Option<&str>) -> Option<Failure> {
    let mut kind = None;
    let mut url_host = None;
    let mut detail = err.to_string();
    let mut cause = Some(err);
    while let Some(e) = cause {
        let text = e.to_string();
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            url_host = url_host.or_else(|| r.url().and_then(host_of));
            if r.is_timeout() {
                kind = kind.or(Some(Kind::Timeout));
            } else if r.is_connect() {
                kind = kind.or(Some(Kind::Connect));
            } else if r.is_request() || r.is_body() {
                kind = kind.or(Some(Kind::Other));
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => kind = Some(Kind::Refused),
                std::io::ErrorKind::TimedOut => kind = Some(Kind::Timeout),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    kind = kind.or(Some(Kind::Other))
                }
                _ => {}
            }
        }
        // hyper-util's connector says "dns error"; rustls's errors name
        // certificates or a corrupt message (TLS spoken to a plain server).
        if text.starts_with("dns error") {
            kind = Some(Kind::Dns);
        } else if text.contains("certificate")
            || text.contains("corrupt message")
            || text.contains("HandshakeFailure")
            || text.starts_with("tls ")
        {
            kind = Some(Kind::Tls);
        } else if text.contains("Connection refused") {
            kind = kind.or(Some(Kind::Refused));
        } else if text == "Timeout" || text.contains("timed out") {
            kind = kind.or(Some(Kind::Timeout));
        }
        detail = text;
        cause = e.source();
    }
    Some(Failure {
        kind: kind?,
        host: url_host.or_else(|| host.map(str::to_owned)),
        detail,
    })
}

/// `host:port` of a URL, as the user wrote it.
fn host_of(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

/// `host:port` of a URL given as text.
pub fn host_of_url(url: &str) -> Option<String> {
    reqwest::Url::parse(url).ok().as_ref().and_then(host_of)
}

/// `err` as a transport failure when it is one, else as it is.
pub fn explain<E>(err: E, host: Option<&str>) -> anyhow::Error
where
    E: Error + Send + Sync + 'static,
{
    match classify(&err, host) {
        Some(failure) => anyhow::Error::new(failure),
        None => anyhow::Error::new(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<dyn Error + Send + Sync>>);
    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn hyper_chains_are_classified_by_their_innermost_cause() {
        let dns = Layer(
            "client error (Connect)",
            Some(Box::new(Layer(
                "dns error",
                Some(Box::new(std::io::Error::other(
                    "failed to lookup address information: Name or service not known",
                ))),
            ))),
        );
        let failure = classify(&dns, Some("oauth2.invalid")).unwrap();
        assert_eq!(failure.kind, Kind::Dns);
        assert_eq!(
            failure.detail,
            "failed to lookup address information: Name or service not known"
        );
        let refused = Layer(
            "tcp connect error",
            Some(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            ))),
        );
        assert_eq!(classify(&refused, None).unwrap().kind, Kind::Refused);
        let tls = Layer(
            "client error (Connect)",
            Some(Box::new(std::io::Error::other(
                "invalid peer certificate: UnknownIssuer",
            ))),
        );
        assert_eq!(classify(&tls, None).unwrap().kind, Kind::Tls);
        // An answer from the server is no transport failure.
        assert!(classify(&Layer("HTTP 403 Forbidden", None), None).is_none());
    }

    #[test]
    fn no_transport_hint_speaks_of_roles() {
        for kind in [
            Kind::Dns,
            Kind::Refused,
            Kind::Connect,
            Kind::Tls,
            Kind::Timeout,
            Kind::Other,
        ] {
            let failure = Failure {
                kind,
                host: Some("127.0.0.1:9".to_owned()),
                detail: "x".to_owned(),
            };
            let text = failure.to_string();
            assert!(!text.contains("roles/"), "{text}");
            assert!(text.contains("\nhint: "), "{text}");
            assert!(text.contains("endpoints.*"), "{text}");
        }
    }
}
