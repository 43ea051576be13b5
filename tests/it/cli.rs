//! The command-line contract: commands, flags, help, configuration, exit codes.

use crate::harness::Env;

#[test]
fn help_lists_every_command_with_examples() {
    let env = Env::new();
    let help = env.infra(&["--help"]).ok().stdout;
    for command in [
        "up", "run", "down", "plan", "status", "query", "config", "sample",
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
        "up", "run", "down", "plan", "status", "query", "config", "sample",
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
