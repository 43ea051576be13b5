//! `up`, `down` and `status` on the local target, with a real PostgreSQL.

use sqlx::Connection;

use crate::harness::Env;

fn postmaster_pid(env: &Env) -> String {
    let text = std::fs::read_to_string(env.state().join("postgres/data/postmaster.pid")).unwrap();
    text.lines().next().unwrap().to_owned()
}

/// Whether a process has exited. A zombie has: it waits only for its
/// parent (here, whatever reaps orphans) to collect its status.
fn gone(pid: &str) -> bool {
    for _ in 0..50 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z')) =>
            {
                return true;
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    false
}

/// The server's dump files in `dir`, its own directory: step 1 moves each
/// into staging, so none should stay behind.
fn dumps_in_flight(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dump-"))
        .collect()
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

    // Step 1 with the table gone (dropped by hand after step 0): the table
    // is named, with the way to make it again, and the server's directory
    // keeps no half-written dump.
    let data = env.path().join("data").display().to_string();
    env.infra(&["sample", "--out", &data, "--scale", "0.001"])
        .ok();
    env.infra(&["run", "--data", &data, "--only", "0"]).ok();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut conn = sqlx::PgConnection::connect_with(&env.db().await)
            .await
            .unwrap();
        sqlx::raw_sql("DROP TABLE bootcampdb.user_purchase")
            .execute(&mut conn)
            .await
            .unwrap();
    });
    let dump = env.infra(&["run", "--only", "1"]).fails(1);
    assert!(
        dump.stderr.contains("cannot dump bootcampdb.user_purchase")
            && dump.stderr.contains("hint: step 0 creates and loads it"),
        "{}",
        dump.stderr
    );
    let spooled = dumps_in_flight(&env.state().join("postgres"));
    assert!(spooled.is_empty(), "{spooled:?}");

    env.infra(&["down", "--yes", "--purge"]).ok();
    assert!(
        !env.state().exists(),
        "down left {:?}",
        std::fs::read_dir(env.state()).map(|d| d.count())
    );
    assert!(gone(&pid), "the server (pid {pid}) still runs after down");
}

/// Issue 14: as root, with the clone in a 0700 home directory, `up` stopped
/// because the `postgres` user could not enter the state dir. The server's
/// files now go to a `postgres`-owned place outside it, and `down` removes them.
#[test]
fn up_works_in_a_state_dir_under_a_closed_directory() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::closed();
    env.infra(&["up"]).ok();
    let location = env.state().join("postgres.location");
    let status = env.infra(&["status"]).ok().stdout;
    assert!(status.contains("running on 127.0.0.1:"), "{status}");
    let mode = std::fs::metadata(env.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "up changed the user's directory");

    // Steps 0 and 1 work there: the server writes the dump into its own
    // directory (all it may write), and it is moved into staging.
    let data = env.path().join("data").display().to_string();
    env.infra(&["sample", "--out", &data, "--scale", "0.001"])
        .ok();
    env.infra(&["run", "--data", &data, "--only", "0"]).ok();
    env.infra(&["run", "--only", "1"]).ok();
    let dump = std::fs::read_to_string(env.state().join("staging/user_purchase.csv")).unwrap();
    assert!(
        dump.starts_with("invoice_number,stock_code,detail,quantity,invoice_date,unit_price,customer_id,country\n"),
        "{}",
        &dump[..dump.len().min(200)]
    );
    assert!(dump.lines().count() > 100, "{} lines", dump.lines().count());
    if !nix::unistd::geteuid().is_root() {
        // The server runs as ourselves: nothing to move.
        assert!(!location.exists());
        assert!(env.state().join("postgres/data/PG_VERSION").is_file());
        return;
    }
    let dir = std::path::PathBuf::from(std::fs::read_to_string(&location).unwrap().trim());
    assert!(!dir.starts_with(env.path()), "{}", dir.display());
    assert!(dir.join("data/PG_VERSION").is_file());
    let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().uid(),
        postgres.uid.as_raw()
    );

    let spooled = dumps_in_flight(&dir);
    assert!(
        spooled.is_empty(),
        "the dump was left in {}: {spooled:?}",
        dir.display()
    );

    env.infra(&["down", "--yes", "--purge"]).ok();
    assert!(!dir.exists(), "down left {}", dir.display());
    assert!(!env.state().exists(), "down left the state dir");
}

/// `up` warms a new Spark Connect server by running both jobs on a
/// sample; a warm-up that fails is a warning, and the next `up` tries
/// again; a warm server is not warmed twice.
#[test]
fn up_warms_spark_connect_once() {
    let env = Env::new().var("INFRA_SPARK_WARM_UP", "true");
    // A file where the warm-up's scratch dir goes makes it fail.
    let scratch = env.state().join("tmp/warm-up");
    std::fs::create_dir_all(scratch.parent().unwrap()).unwrap();
    std::fs::write(&scratch, "in the way").unwrap();
    let failed = env.infra(&["up"]).ok();
    assert!(
        failed.stderr.contains("the Spark Connect warm-up failed"),
        "{}",
        failed.stderr
    );
    let mark = env.state().join("spark/warm");
    assert!(!mark.exists(), "a failed warm-up marked the server warm");

    std::fs::remove_file(&scratch).unwrap();
    let warmed = env.infra(&["up"]).ok();
    assert!(
        warmed.stderr.contains("+ Spark Connect: warm it up"),
        "{}",
        warmed.stderr
    );
    assert!(
        warmed.stderr.contains("Spark Connect warmed up in"),
        "{}",
        warmed.stderr
    );
    let pid_dir = env.state().join("spark/pid");
    let pid_file = std::fs::read_dir(&pid_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let pid = std::fs::read_to_string(pid_file.path()).unwrap();
    assert_eq!(std::fs::read_to_string(&mark).unwrap().trim(), pid.trim());
    assert!(!scratch.exists(), "the warm-up left {}", scratch.display());

    let again = env.infra(&["up"]).ok();
    assert!(
        again.stderr.contains("= Spark Connect: warm it up"),
        "{}",
        again.stderr
    );
    assert!(!again.stderr.contains("warming up"), "{}", again.stderr);
    env.infra(&["down", "--yes"]).ok();
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

/// SIGTERM stops the step, records it as interrupted and exits 143; the
/// run can be resumed. Sent when the step has started (read from the
/// progress lines), not after a delay.
#[test]
fn sigterm_stops_the_run_records_it_and_exits_143() {
    use std::io::BufRead;

    let env = Env::new();
    env.infra(&["up"]).ok();
    let data = env.sample("0.002", None);
    let mut child = env
        .command(&["run", "--data", data.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let mut sent = false;
    // Read to the end, so the child never blocks on a full pipe.
    for line in stderr.lines() {
        let line = line.unwrap();
        if !sent && line.contains("step 2 tokenize") {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
            sent = true;
        }
        seen.push(line);
    }
    assert!(sent, "step 2 never started:\n{}", seen.join("\n"));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{}", seen.join("\n"));
    let runs = env.state().join("runs");
    let record = std::fs::read_dir(&runs)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    let tokenize = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "tokenize")
        .unwrap();
    assert_eq!(tokenize["outcome"], "interrupted");
    assert_eq!(record["outcome"], "interrupted");
}
