//! The common failures a new user meets, each with its whole message and
//! `hint:` pinned as a snapshot (paths and ports redacted).

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Env, Run, regex_escape};

/// Snapshots the error report on stderr (from `error:` on: the progress
/// lines before it are not the message) with the temp dir and ports redacted.
#[track_caller]
fn snapshot(name: &str, env: &Env, run: &Run) {
    let report = run
        .stderr
        .find("error: ")
        .map(|at| &run.stderr[at..])
        .unwrap_or_else(|| panic!("no error on stderr:\n{}", run.stderr));
    let tmp = regex_escape(&env.path().display().to_string());
    insta::with_settings!({
        filters => vec![
            (tmp.as_str(), "[TMP]"),
            (r"port \d+", "port [PORT]"),
            (r"INFRA_DATABASE_PORT=\d+", "INFRA_DATABASE_PORT=[PORT]"),
        ],
        prepend_module_to_snapshot => true,
    }, {
        insta::assert_snapshot!(name, report);
    });
}

/// A gcp environment with no credentials anywhere.
fn gcp_env() -> Env {
    let env = Env::new().var("INFRA_PROJECT", "demo-project");
    let home = env.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    env.var("HOME", &home.display().to_string())
        .var("NO_GCE_CHECK", "True")
        .var("CLOUDSDK_CONFIG", "")
}

fn run_without(env: &Env, args: &[&str], remove: &[&str]) -> Run {
    let mut cmd = env.command(args);
    for var in remove {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn no_credentials() {
    let env = gcp_env();
    // `plan` plans offline without credentials (tests/it/offline_plan.rs);
    // `down` still needs them.
    let run = run_without(
        &env,
        &["down", "--yes"],
        &["GOOGLE_APPLICATION_CREDENTIALS"],
    )
    .fails(1);
    snapshot("no_credentials", &env, &run);
}

#[test]
fn terraform_missing() {
    let env = gcp_env();
    let key = env.write("key.json", r#"{"type": "authorized_user"}"#);
    let env = env
        .var("GOOGLE_APPLICATION_CREDENTIALS", &key.display().to_string())
        .var("PATH", "/nonexistent");
    let run = env.infra(&["plan"]).fails(1);
    snapshot("terraform_missing", &env, &run);
}

#[test]
fn port_in_use() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let env = Env::new().var("INFRA_DATABASE_PORT", &port);
    let run = env.infra(&["up"]).fails(1);
    snapshot("port_in_use", &env, &run);
}

#[test]
fn input_file_missing() {
    let env = Env::new();
    std::fs::create_dir_all(env.path().join("data")).unwrap();
    let run = env.infra(&["run", "--data", "data"]).fails(1);
    snapshot("input_file_missing", &env, &run);
}

/// Issue 14: `infra up && infra run`, the README's three verbs, ended in a
/// bare "No such file or directory" from the raw bucket.
#[test]
fn run_without_data_hints_at_data() {
    let env = Env::new();
    env.infra(&["up"]).ok();
    let run = env.infra(&["run"]).fails(1);
    snapshot("run_without_data", &env, &run);
}

#[test]
fn java_too_old() {
    let env = Env::new();
    let java = env.write(
        "bin/java",
        "#!/bin/sh\necho 'openjdk 11.0.22 2024-01-16'\necho 'OpenJDK Runtime Environment'\n",
    );
    std::fs::set_permissions(&java, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        java.parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let env = env.var("PATH", &path);
    let run = env.infra(&["up"]).fails(1);
    snapshot("java_too_old", &env, &run);
    assert!(!env.state().exists(), "up changed things before failing");
}

/// Dataproc's documented limits (an idle TTL of at least 5 minutes, an age
/// of 10 minutes to 14 days, at least 2 primary workers, a published
/// image) fail `plan` and `up` before anything is asked of Google, naming
/// the setting.
#[test]
fn dataproc_settings_outside_googles_limits_fail_plan_and_up() {
    for (var, value, expected) in [
        (
            "INFRA_DATAPROC_IDLE_TTL_SECS",
            "60",
            "invalid `dataproc.idle_ttl_secs` = 60",
        ),
        (
            "INFRA_DATAPROC_MAX_AGE_SECS",
            "1209601",
            "invalid `dataproc.max_age_secs` = 1209601",
        ),
        (
            "INFRA_DATAPROC_WORKERS",
            "1",
            "invalid `dataproc.workers` = 1",
        ),
        (
            "INFRA_DATAPROC_IMAGE_VERSION",
            "3.0.9-debian13",
            "invalid `dataproc.image_version` = `3.0.9-debian13`",
        ),
    ] {
        let env = gcp_env().var(var, value);
        for verb in [&["plan"][..], &["up", "--yes"][..]] {
            let mut args = vec!["--target", "gcp"];
            args.extend_from_slice(verb);
            let run = env.infra(&args).fails(1);
            assert!(run.stderr.contains(expected), "{verb:?}: {}", run.stderr);
            assert!(
                !run.stderr.contains("credentials"),
                "checked after the credentials: {}",
                run.stderr
            );
        }
    }
}
