//! The command-line contract: commands, flags, help, configuration, exit codes.

use crate::harness::Env;

#[test]
fn help_lists_every_command_with_examples() {
    let env = Env::new();
    let help = env.infra(&["--help"]).ok().stdout;
    for command in [
        "up", "run", "down", "plan", "render", "status", "query", "config", "sample",
    ] {
        assert!(
            help.contains(&format!("  {command} ")),
            "{command} missing from:\n{help}"
        );
    }
    for flag in ["--target", "--config", "--state-dir"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    for command in [
        "up", "run", "down", "plan", "render", "status", "query", "config", "sample",
    ] {
        let help = env.infra(&[command, "--help"]).ok().stdout;
        assert!(
            help.contains("Examples:"),
            "`infra {command} --help` has no examples:\n{help}"
        );
    }
    let run = env.infra(&["run", "--help"]).ok().stdout;
    for flag in ["--data", "--from", "--only"] {
        assert!(run.contains(flag), "{flag} missing from:\n{run}");
    }
    insta::assert_snapshot!(help);
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    let out = env.infra(&["run", "--from", "7"]).fails(2);
    assert!(out.stderr.contains("unknown step `7`"), "{}", out.stderr);
    env.infra(&["no-such-command"]).fails(2);
    env.infra(&["run", "--from", "1", "--only", "2"]).fails(2);
}

#[test]
fn configuration_precedence_is_flags_env_file_defaults() {
    let env = Env::new()
        .var("INFRA_SPARK_MASTER", "local[2]")
        .var("INFRA_REGION", "env-region");
    env.write(
        "infra.toml",
        "region = \"file-region\"\n[spark]\nmaster = \"local[1]\"\ndriver_memory = \"3g\"\n[warehouse]\ndataset = \"file_ds\"\n",
    );
    let out = env.infra(&["config"]).ok().stdout;
    let config: toml::Table = toml::from_str(&out).unwrap();
    assert_eq!(config["region"].as_str(), Some("env-region"));
    assert_eq!(config["spark"]["master"].as_str(), Some("local[2]"));
    assert_eq!(config["spark"]["driver_memory"].as_str(), Some("3g"));
    assert_eq!(config["warehouse"]["dataset"].as_str(), Some("file_ds"));
    assert_eq!(
        config["warehouse"]["table"].as_str(),
        Some("user_behavior_metric")
    );
    assert_eq!(config["target"].as_str(), Some("local"));
    // The flag beats everything.
    let out = env.infra(&["--target", "gcp", "config"]).ok().stdout;
    assert!(out.contains("target = \"gcp\""), "{out}");
    let state = env.state();
    assert!(
        out.contains(&format!("state_dir = \"{}\"", state.display())),
        "{out}"
    );
}

#[test]
fn a_project_makes_gcp_the_default_target() {
    let env = Env::new().var("INFRA_PROJECT", "my-project");
    let out = env.infra(&["config"]).ok().stdout;
    assert!(out.contains("target = \"gcp\""), "{out}");
}

#[test]
fn an_unknown_config_key_is_named() {
    let env = Env::new();
    env.write("infra.toml", "[spark]\ndriver_mem = \"2g\"\n");
    let out = env.infra(&["config"]).fails(1);
    assert!(
        out.stderr.contains("unknown key `spark.driver_mem`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
}

#[test]
fn an_explicit_config_file_must_exist() {
    let env = Env::new();
    let out = env.infra(&["--config", "nope.toml", "config"]).fails(1);
    assert!(
        out.stderr.contains("cannot read config file nope.toml"),
        "{}",
        out.stderr
    );
}

/// Regression (issues 9 and 13): `println!` panicked with exit 101 when the
/// reader had gone, and `query --format csv|json` exited 1 with "Broken pipe".
#[test]
fn a_closed_stdout_exits_0_on_every_command() {
    let env = Env::new().var("INFRA_PROJECT", "my-project-1");
    let state = env.state();
    std::fs::create_dir_all(&state).unwrap();
    duckdb::Connection::open(state.join("warehouse.duckdb"))
        .unwrap()
        .execute_batch("CREATE TABLE t AS SELECT range AS n FROM range(1000)")
        .unwrap();
    let local = ["--target", "local"];
    let commands: [&[&str]; 9] = [
        &[&local[..], &["status"]].concat(),
        &[&local[..], &["plan"]].concat(),
        &["config"],
        &["render"],
        &[&local[..], &["run", "--dry-run"]].concat(),
        &[&local[..], &["query", "SELECT * FROM t"]].concat(),
        &[&local[..], &["query", "--format", "csv", "SELECT * FROM t"]].concat(),
        &[
            &local[..],
            &["query", "--format", "json", "SELECT * FROM t"],
        ]
        .concat(),
        &[&local[..], &["query", "--format", "json", "SELECT 1 AS a"]].concat(),
    ];
    for args in commands {
        let out = env.infra_closed_stdout(args);
        assert_eq!(out.status, 0, "infra {args:?}: {}", out.stderr);
        assert!(
            !out.stderr.contains("panicked"),
            "infra {args:?}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("error"),
            "infra {args:?}: {}",
            out.stderr
        );
    }
}

/// Only `commands::out` may write to stdout: a `println!` elsewhere would
/// panic on a closed pipe again.
#[test]
fn nothing_but_commands_out_prints_to_stdout() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, line) in text.lines().enumerate() {
                    if line.contains("println!(") && !line.contains("eprintln!(")
                        || line.contains("print!(") && !line.contains("eprint!(")
                        || line.contains("std::io::stdout()") && !path.ends_with("commands/out.rs")
                    {
                        offenders.push(format!("{}:{}: {line}", path.display(), i + 1));
                    }
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "write stdout through commands::out:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn config_mistakes_name_the_key_and_the_fix() {
    let env = Env::new();
    env.write("infra.toml", "[database]\nprot = 5432\n");
    let out = env.infra(&["config"]).fails(1);
    assert!(
        out.stderr.contains("did you mean `database.port`?"),
        "{}",
        out.stderr
    );
    env.write("infra.toml", "[database]\nport = 99999\n");
    let out = env.infra(&["config"]).fails(1);
    assert!(out.stderr.contains("a port is 0-65535"), "{}", out.stderr);
    env.write("infra.toml", "[warehouse]\ntable = \"t; DROP TABLE x\"\n");
    let out = env.infra(&["up", "--dry-run"]).fails(1);
    assert!(
        out.stderr.contains("invalid `warehouse.table`"),
        "{}",
        out.stderr
    );
    assert!(!env.state().exists(), "a bad config created the state dir");
}

/// Regression: a non-UTF-8 variable in the environment panicked in
/// `std::env::vars()`.
#[test]
fn a_non_utf8_environment_does_not_crash() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let out = env
        .command(&["config"])
        .env("SOME_PATH", latin1)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env
        .command(&["config"])
        .env("INFRA_REGION", latin1)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("INFRA_REGION is not valid UTF-8"),
        "{stderr}"
    );
}

#[test]
fn query_refuses_what_it_cannot_show_faithfully() {
    let env = Env::new();
    std::fs::create_dir_all(env.state()).unwrap();
    duckdb::Connection::open(env.state().join("warehouse.duckdb")).unwrap();
    let out = env.infra(&["query", "  -- nothing\n"]).fails(2);
    assert!(out.stderr.contains("the query is empty"), "{}", out.stderr);
    let out = env.infra(&["query", "select 1; select 2"]).fails(2);
    assert!(out.stderr.contains("runs one statement"), "{}", out.stderr);
    let out = env
        .infra(&["query", "--format", "json", "select 1 as a, 2 as a"])
        .fails(2);
    assert!(
        out.stderr.contains("two columns named `a`"),
        "{}",
        out.stderr
    );
    let out = env.infra(&["query", "selec 1"]).fails(1);
    assert!(out.stderr.contains("syntax error"), "{}", out.stderr);
    assert!(!out.stderr.contains("Unknown error code"), "{}", out.stderr);
    let out = env
        .infra(&[
            "query",
            "--format",
            "csv",
            "select NULL as x, 1 as a, 2 as a",
        ])
        .ok();
    assert_eq!(out.stdout, "x,a,a\n,1,2\n");
}

#[test]
fn sample_never_overwrites_without_force() {
    let env = Env::new();
    let dir = env.path().join("data");
    let dir = dir.display().to_string();
    env.write("data/movie_review.csv", "mine\n");
    let out = env
        .infra(&["sample", "--out", &dir, "--scale", "0.001"])
        .fails(2);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(env.path().join("data/movie_review.csv")).unwrap(),
        "mine\n"
    );
    env.infra(&["sample", "--out", &dir, "--scale", "0.001", "--force"])
        .ok();
    assert!(env.path().join("data/user_purchase.csv").is_file());
}
