//! `up`, `down` and `status` on the local target, with a real PostgreSQL.

use crate::harness::Env;

fn postmaster_pid(env: &Env) -> String {
    let text = std::fs::read_to_string(env.state().join("postgres/data/postmaster.pid")).unwrap();
    text.lines().next().unwrap().to_owned()
}

#[test]
fn up_twice_reuses_the_server_and_down_leaves_nothing() {
    let env = Env::new();
    env.infra(&["up"]).ok();
    for bucket in ["raw", "staging", "code"] {
        assert!(env.state().join(bucket).is_dir(), "bucket {bucket} missing");
    }
    assert!(env.state().join("code/tokenizer.py").is_file());
    let password = env.state().join("postgres.password");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&password).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the password file must be private");
    let pid = postmaster_pid(&env);

    let second = env.infra(&["up"]).ok();
    assert!(
        second.stderr.contains("= PostgreSQL: reuse the server"),
        "{}",
        second.stderr
    );
    assert_eq!(
        postmaster_pid(&env),
        pid,
        "the second `up` started another server"
    );

    let status = env.infra(&["status"]).ok().stdout;
    assert!(status.contains("running on 127.0.0.1:"), "{status}");
    assert!(status.contains("no runs yet"), "{status}");

    env.infra(&["down", "--yes"]).ok();
    assert!(
        !env.state().exists(),
        "down left {:?}",
        std::fs::read_dir(env.state()).map(|d| d.count())
    );
    let pid: i32 = pid.parse().unwrap();
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
        "the server (pid {pid}) still runs after down"
    );
}

#[test]
fn down_without_a_terminal_asks_for_yes() {
    let env = Env::new();
    std::fs::create_dir_all(env.state().join("raw")).unwrap();
    let out = env.infra(&["down"]).fails(2);
    assert!(out.stderr.contains("pass --yes"), "{}", out.stderr);
    assert!(
        env.state().join("raw").is_dir(),
        "down deleted without asking"
    );
}

#[test]
fn a_configured_port_in_use_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let env = Env::new().var("INFRA_DATABASE_PORT", &port);
    let out = env.infra(&["up"]).fails(1);
    assert!(
        out.stderr
            .contains(&format!("port {port} on 127.0.0.1 is in use")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
}

#[test]
fn run_before_up_says_to_run_up() {
    let env = Env::new();
    let out = env.infra(&["run"]).fails(1);
    assert!(
        out.stderr.contains("run `infra up` first"),
        "{}",
        out.stderr
    );
}

#[test]
fn plan_and_dry_runs_change_nothing() {
    let env = Env::new();
    let plan = env.infra(&["plan"]).ok().stdout;
    assert!(plan.contains("+ PostgreSQL: initdb"), "{plan}");
    for step in [
        "0 load_purchases",
        "1 dump_purchases",
        "2 tokenize",
        "3 user_behavior",
        "4 load_warehouse",
    ] {
        assert!(plan.contains(step), "{step} missing from:\n{plan}");
    }
    let dry = env.infra(&["run", "--from", "3", "--dry-run"]).ok().stdout;
    assert!(
        !dry.contains("2 tokenize") && dry.contains("3 user_behavior"),
        "{dry}"
    );
    env.infra(&["up", "--dry-run"]).ok();
    assert!(!env.state().exists(), "a dry run created the state dir");
}
