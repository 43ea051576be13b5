//! Are there Google Cloud credentials? Checked before terraform runs, so a
//! missing login is one clear error with the command that fixes it, not a
//! provider stack trace halfway through a plan.
//!
//! Application Default Credentials are looked for where Google's client
//! libraries look, in their order: the file `GOOGLE_APPLICATION_CREDENTIALS`
//! names; gcloud's well-known file (`$CLOUDSDK_CONFIG`, else
//! `~/.config/gcloud`, `application_default_credentials.json`); and the
//! metadata server when running on Google Cloud, which the libraries detect
//! from the machine's DMI product name (`NO_GCE_CHECK=True` turns that
//! off, as it does for them). Whether the credentials are still
//! valid is for the first API call to say.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// Where the credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The file `GOOGLE_APPLICATION_CREDENTIALS` names.
    EnvFile(PathBuf),
    /// gcloud's `application_default_credentials.json`.
    Gcloud(PathBuf),
    /// The metadata server of the Google Cloud machine we run on.
    MetadataServer,
}

/// Where Linux reports the machine's product name; "Google" on Compute Engine.
const DMI_PRODUCT_NAME: &str = "/sys/class/dmi/id/product_name";

/// Finds Application Default Credentials for this process.
pub fn detect() -> Result<Credentials> {
    detect_with(|key| std::env::var_os(key), Path::new(DMI_PRODUCT_NAME))
}

/// [`detect`] with the environment and the DMI file passed in, for tests.
pub fn detect_with(
    env: impl Fn(&str) -> Option<OsString>,
    dmi_product_name: &Path,
) -> Result<Credentials> {
    let hint = "hint: run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a credentials file";
    if let Some(path) = env("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(Credentials::EnvFile(path));
        }
        bail!(
            "GOOGLE_APPLICATION_CREDENTIALS names {}, which does not exist\n{hint}",
            path.display()
        );
    }
    let gcloud_dir = env("CLOUDSDK_CONFIG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".config/gcloud")));
    let well_known = gcloud_dir.map(|dir| dir.join("application_default_credentials.json"));
    if let Some(path) = &well_known
        && path.is_file()
    {
        return Ok(Credentials::Gcloud(path.clone()));
    }
    let gce_check =
        !env("NO_GCE_CHECK").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    if gce_check
        && std::fs::read_to_string(dmi_product_name)
            .is_ok_and(|name| name.trim().starts_with("Google"))
    {
        return Ok(Credentials::MetadataServer);
    }
    let looked = match &well_known {
        Some(path) => format!(
            "GOOGLE_APPLICATION_CREDENTIALS is unset, {} does not exist",
            path.display()
        ),
        None => "GOOGLE_APPLICATION_CREDENTIALS and HOME are unset".to_owned(),
    };
    bail!(
        "no Google Cloud credentials found ({looked}, and this is not a Google Cloud machine)\n{hint}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a Path)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |key| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_os_str().to_owned())
        }
    }

    #[test]
    fn the_env_file_comes_first_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.json");
        std::fs::write(&key, "{}").unwrap();
        let found = detect_with(
            env(&[("GOOGLE_APPLICATION_CREDENTIALS", &key)]),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(found, Credentials::EnvFile(key));

        let missing = dir.path().join("missing.json");
        let err = detect_with(
            env(&[("GOOGLE_APPLICATION_CREDENTIALS", &missing)]),
            Path::new("/nonexistent"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(
            err.contains("hint: run `gcloud auth application-default login`"),
            "{err}"
        );
    }

    #[test]
    fn gcloud_well_known_file_under_home_or_cloudsdk_config() {
        let home = tempfile::tempdir().unwrap();
        let adc = home
            .path()
            .join(".config/gcloud/application_default_credentials.json");
        std::fs::create_dir_all(adc.parent().unwrap()).unwrap();
        std::fs::write(&adc, "{}").unwrap();
        let found = detect_with(env(&[("HOME", home.path())]), Path::new("/nonexistent")).unwrap();
        assert_eq!(found, Credentials::Gcloud(adc));

        let config = tempfile::tempdir().unwrap();
        let adc = config.path().join("application_default_credentials.json");
        std::fs::write(&adc, "{}").unwrap();
        let found = detect_with(
            env(&[
                ("HOME", Path::new("/nonexistent")),
                ("CLOUDSDK_CONFIG", config.path()),
            ]),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(found, Credentials::Gcloud(adc));
    }

    #[test]
    fn a_google_cloud_machine_has_the_metadata_server() {
        let dir = tempfile::tempdir().unwrap();
        let dmi = dir.path().join("product_name");
        std::fs::write(&dmi, "Google Compute Engine\n").unwrap();
        let found = detect_with(env(&[("HOME", dir.path())]), &dmi).unwrap();
        assert_eq!(found, Credentials::MetadataServer);
        let no_check = [("HOME", dir.path()), ("NO_GCE_CHECK", Path::new("True"))];
        assert!(detect_with(env(&no_check), &dmi).is_err());
    }

    #[test]
    fn nothing_found_says_what_to_run() {
        let home = tempfile::tempdir().unwrap();
        let err = detect_with(env(&[("HOME", home.path())]), Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("no Google Cloud credentials found"),
            "{err}"
        );
        assert!(
            err.contains("application_default_credentials.json does not exist"),
            "{err}"
        );
        assert!(
            err.contains("hint: run `gcloud auth application-default login`"),
            "{err}"
        );
    }
}
