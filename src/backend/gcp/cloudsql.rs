//! The connection to Cloud SQL for PostgreSQL, from Terraform's outputs.
//!
//! Two ways in: the instance's public IP, reachable only from the
//! operator's authorized network, or its private IP from inside the VPC
//! (Dataproc, GKE). Either way the connection is TLS: verified against the
//! instance's server CA when Terraform gives it (`VerifyCa`; Cloud SQL's
//! certificate names the instance, not the IP, so `VerifyFull` cannot
//! work), else encrypted without verification (`Require`). The password
//! never appears in logs or `Debug` output.

use anyhow::{Result, bail};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// How to reach the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The public IP, from the operator's authorized network.
    Public,
    /// The private IP, from inside the VPC.
    Private,
}

/// What Terraform outputs about the instance, and the credentials.
#[derive(Clone)]
pub struct CloudSql {
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub database: String,
    pub user: String,
    pub password: String,
    /// The instance's server CA certificate, PEM (`server_ca_cert`).
    pub server_ca_pem: Option<String>,
}

impl std::fmt::Debug for CloudSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudSql")
            .field("public_ip", &self.public_ip)
            .field("private_ip", &self.private_ip)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"****")
            .field(
                "server_ca_pem",
                &self.server_ca_pem.as_ref().map(|_| "(PEM)"),
            )
            .finish()
    }
}

impl CloudSql {
    /// Connection options over `route`, TLS always. sqlx's own `Debug` for
    /// the options prints the password: log [`CloudSql`], never these.
    pub fn connect_options(&self, route: Route) -> Result<PgConnectOptions> {
        let host = match route {
            Route::Public => self.public_ip.as_deref().filter(|ip| !ip.is_empty()),
            Route::Private => self.private_ip.as_deref().filter(|ip| !ip.is_empty()),
        };
        let Some(host) = host else {
            bail!(
                "the Cloud SQL instance has no {} IP\nhint: {}",
                match route {
                    Route::Public => "public",
                    Route::Private => "private",
                },
                match route {
                    Route::Public =>
                        "set `database.operator_cidr` to your network and run `infra up`, or run from inside the VPC",
                    Route::Private =>
                        "run from inside the VPC, or reach the public IP from the authorized network",
                }
            );
        };
        let options = PgConnectOptions::new_without_pgpass()
            .host(host)
            .port(5432)
            .database(&self.database)
            .username(&self.user)
            .password(&self.password)
            .application_name("infra");
        Ok(match &self.server_ca_pem {
            Some(pem) => options
                .ssl_mode(PgSslMode::VerifyCa)
                .ssl_root_cert_from_pem(pem.as_bytes().to_vec()),
            None => options.ssl_mode(PgSslMode::Require),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> CloudSql {
        CloudSql {
            public_ip: Some("203.0.113.7".into()),
            private_ip: Some("10.20.0.3".into()),
            database: "bootcampdb".into(),
            user: "bootcamp".into(),
            password: "s3cret-pa55".into(),
            server_ca_pem: Some(
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            ),
        }
    }

    #[test]
    fn each_route_uses_its_ip_over_verified_tls() {
        let sql = instance();
        let public = sql.connect_options(Route::Public).unwrap();
        assert_eq!(public.get_host(), "203.0.113.7");
        assert_eq!(public.get_port(), 5432);
        assert!(matches!(public.get_ssl_mode(), PgSslMode::VerifyCa));
        let private = sql.connect_options(Route::Private).unwrap();
        assert_eq!(private.get_host(), "10.20.0.3");
        assert_eq!(private.get_database(), Some("bootcampdb"));
    }

    #[test]
    fn without_a_ca_tls_is_still_required() {
        let sql = CloudSql {
            server_ca_pem: None,
            ..instance()
        };
        assert!(matches!(
            sql.connect_options(Route::Public).unwrap().get_ssl_mode(),
            PgSslMode::Require
        ));
    }

    #[test]
    fn a_missing_ip_says_how_to_get_one() {
        let sql = CloudSql {
            public_ip: None,
            ..instance()
        };
        let err = sql.connect_options(Route::Public).unwrap_err().to_string();
        assert!(
            err.contains("no public IP") && err.contains("operator_cidr"),
            "{err}"
        );
    }

    #[test]
    fn the_password_is_never_printed() {
        let sql = instance();
        let debug = format!("{sql:?}");
        assert!(!debug.contains("s3cret-pa55"), "{debug}");
        assert!(debug.contains("****"));
    }
}
