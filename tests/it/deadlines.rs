//! Issue 22 on the local target: nothing `run` waits on can hang it. Each
//! fault is injected into real servers, with the limits shortened through
//! settings (never by sleeping): the Spark Connect server killed during a
//! step and between two steps, stopped (SIGSTOP) during a step, and
//! PostgreSQL stopped during steps 0 and 1 and before a run connects.
//!
//! After each failure the test checks what the issue asks: the exit code,
//! the step recorded as failed with its cause on the first line, nothing of
//! the state dir left running but the PostgreSQL server, the run lock free,
//! and that `run --from N` then succeeds.

use std::path::PathBuf;

use infra::record::Records;
use nix::sys::signal::Signal::{self, SIGCONT, SIGKILL, SIGSTOP};
use nix::unistd::Pid;
use sqlx::{Connection, PgConnection};

use crate::faults::{
    Hold, exits, last_run, lock_purchases, processes, running, spark_groups, spawn, step_outcome,
    wait_for,
};
use crate::harness::Env;

/// The first line of the error recorded for `step` in the last run.
pub(crate) fn recorded_cause(env: &Env, step: &str) -> String {
    let run = last_run(env);
    let record = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == step)
        .unwrap_or_else(|| panic!("no record of {step}: {run:#}"));
    record["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{step} recorded no error: {run:#}"))
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

/// What a failed run must leave: `step` recorded as failed, nothing of the
/// state dir running but the target's servers (PostgreSQL, the Spark
/// Connect server: they stay up between runs; the Spark test checks its
/// server's end itself), and the run lock free.
#[track_caller]
pub(crate) fn assert_failed_and_released(env: &Env, step: &str) {
    let run = last_run(env);
    assert_eq!(
        step_outcome(&run, step).as_deref(),
        Some("failed"),
        "{run:#}"
    );
    assert_eq!(run["outcome"], "failed");
    let left: Vec<String> = processes()
        .into_iter()
        .map(|(_, _, cmd)| cmd)
        .filter(|cmd| cmd.contains(&env.state().display().to_string()))
        .filter(|cmd| !cmd.contains("/bin/postgres") && !cmd.contains("SparkConnectServer"))
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
    let lock = Records::new(&env.state()).lock("test");
    assert!(lock.is_ok(), "the run lock is still held: {:?}", lock.err());
}

/// The Spark Connect server's pid, from the pid file `spark-daemon.sh` keeps.
fn spark_server_pid(env: &Env) -> i32 {
    let dir = env.state().join("spark/pid");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pid"))
        .unwrap_or_else(|| panic!("no pid file in {}", dir.display()));
    std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn is_alive(pid: i32) -> bool {
    // A zombie has exited: its cmdline is empty.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

fn send(pid: i32, signal: Signal) {
    nix::sys::signal::kill(Pid::from_raw(pid), signal).unwrap();
}

/// Issue 22: the server killed with SIGKILL during step 2 and between
/// steps 2 and 3, and stopped with SIGSTOP during step 3. Before the fix
/// the pyspark client went on retrying a server that was gone (about ten
/// minutes) or stuck (forever), with the run lock held.
#[test]
fn a_lost_spark_connect_server_fails_the_step_within_seconds_and_resumes() {
    let env = Env::new();
    let hold = Hold {
        dir: env.path().join("holds"),
    };
    std::fs::create_dir_all(&hold.dir).unwrap();
    let env = env
        .var(infra::hold::ENV, &hold.dir.display().to_string())
        .var("INFRA_SPARK_HEARTBEAT_TIMEOUT_SECS", "5");
    let data = env.sample("0.01", Some("22")).display().to_string();
    env.infra(&["up"]).ok();

    // 1. SIGKILL during step 2, once its client is running.
    let child = spawn(&env, &["run", "--data", &data]);
    wait_for("the tokenizer's client", || {
        running(&env, "tokenize") && !spark_groups(&env.state()).is_empty()
    });
    let server = spark_server_pid(&env);
    send(server, SIGKILL);
    let (code, stderr) = exits(child);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("step 2 tokenize failed") && stderr.contains("infra run --from 2"),
        "{stderr}"
    );
    assert!(stderr.contains("its log ends"), "{stderr}");
    let cause = recorded_cause(&env, "tokenize");
    assert!(
        cause.contains(&format!(
            "Spark Connect server (pid {server}) died while Spark job tokenizer ran"
        )),
        "{cause}"
    );
    assert_failed_and_released(&env, "tokenize");

    // 2. The resume, with the server killed again between steps 2 and 3:
    // not a failure, by choice (ARCHITECTURE.md, "Every wait in run"):
    // step 3 finds it dead and starts a fresh one, as every run does, and
    // the run exits 0 without hanging (`exits` bounds the wait).
    hold.set("after-2");
    let child = spawn(&env, &["run", "--from", "2"]);
    wait_for("step 2 to finish", || hold.reached("after-2"));
    assert_eq!(
        step_outcome(&last_run(&env), "tokenize").as_deref(),
        Some("succeeded")
    );
    let server = spark_server_pid(&env);
    send(server, SIGKILL);
    wait_for("the server to die", || !is_alive(server));
    hold.release("after-2");
    let (code, stderr) = exits(child);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("the local Spark Connect server is not running")
            && stderr.contains("starting it again"),
        "{stderr}"
    );
    assert_eq!(last_run(&env)["outcome"], "succeeded");
    let fresh = spark_server_pid(&env);
    assert_ne!(fresh, server, "step 3 did not start a fresh server");
    assert!(is_alive(fresh), "the fresh server {fresh} is not running");

    // 3. SIGSTOP during step 3: alive, accepting connections, silent.
    let child = spawn(&env, &["run", "--from", "3"]);
    wait_for("user_behavior's client", || {
        running(&env, "user_behavior") && !spark_groups(&env.state()).is_empty()
    });
    let server = spark_server_pid(&env);
    send(server, SIGSTOP);
    let (code, stderr) = exits(child);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("step 3 user_behavior failed") && stderr.contains("infra run --from 3"),
        "{stderr}"
    );
    assert!(stderr.contains("spark.heartbeat_timeout_secs"), "{stderr}");
    let cause = recorded_cause(&env, "user_behavior");
    assert!(
        cause.contains(&format!(
            "Spark Connect server (pid {server}) answered no heartbeat for 5s (its process is stopped) while Spark job user_behavior ran, so it was killed"
        )),
        "{cause}"
    );
    assert!(!is_alive(server), "the stopped server was left behind");
    assert_failed_and_released(&env, "user_behavior");
    let out = env.infra(&["run", "--from", "3"]).ok();
    assert!(out.stderr.contains("starting it again"), "{}", out.stderr);
    assert_eq!(last_run(&env)["outcome"], "succeeded");
    env.infra(&["down", "--yes"]).ok();
}

/// The postmaster's pid: the first line of `postmaster.pid`.
fn postmaster(env: &Env) -> i32 {
    let file: PathBuf = env.state().join("postgres/data/postmaster.pid");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Sends `signal` to every process of the server: the postmaster and its
/// children (each backend is a session of its own, so not by group).
fn signal_server(env: &Env, signal: Signal) {
    let postmaster = postmaster(env);
    send(postmaster, signal);
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 4, the parent, follows the state after the command name.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if parent == Some(postmaster) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
    }
}

/// Waits until a statement of `infra` waits for a lock the test holds.
async fn wait_for_lock_wait(env: &Env) {
    let mut conn = PgConnection::connect_with(&env.db().await).await.unwrap();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'infra' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Holds `step` on a lock of the purchase table, stops every process of the
/// PostgreSQL server while `infra` waits on it, and returns the failed
/// run's stderr once `infra` has given up. The server is continued after.
async fn stop_postgres_during(env: &Env, args: &[&str], step: &str) -> String {
    let lock = lock_purchases(env).await;
    let child = spawn(env, args);
    wait_for(step, || running(env, step));
    wait_for_lock_wait(env).await;
    signal_server(env, SIGSTOP);
    let (code, stderr) = exits(child);
    assert_eq!(code, 1, "{stderr}");
    signal_server(env, SIGCONT);
    drop(lock);
    stderr
}

/// Issue 22: PostgreSQL stopped with SIGSTOP while step 0 and step 1 wait
/// on it, and while a run connects. A stopped server cannot enforce its own
/// `statement_timeout`; before the fix each of these waited forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_postgres_fails_the_step_within_its_timeouts_and_resumes() {
    let env = Env::new()
        .var("INFRA_DATABASE_STATEMENT_TIMEOUT_SECS", "10")
        .var("INFRA_DATABASE_CONNECT_TIMEOUT_SECS", "3");
    let data = env.sample("0.01", Some("22")).display().to_string();
    env.infra(&["up"]).ok();
    env.infra(&["run", "--data", &data, "--only", "0"]).ok();

    // Step 0, waiting on its TRUNCATE.
    let stderr = stop_postgres_during(&env, &["run", "--only", "0"], "load_purchases").await;
    assert!(
        stderr.contains("step 0 load_purchases failed") && stderr.contains("infra run --from 0"),
        "{stderr}"
    );
    let cause = recorded_cause(&env, "load_purchases");
    assert!(
        cause.contains("did not answer TRUNCATE bootcampdb.user_purchase within 15s"),
        "{cause}"
    );
    assert_failed_and_released(&env, "load_purchases");
    env.infra(&["run", "--only", "0"]).ok();

    // Step 1, waiting on its dump.
    let stderr = stop_postgres_during(&env, &["run", "--only", "1"], "dump_purchases").await;
    assert!(
        stderr.contains("step 1 dump_purchases failed") && stderr.contains("infra run --from 1"),
        "{stderr}"
    );
    let cause = recorded_cause(&env, "dump_purchases");
    assert!(
        cause.contains("did not finish the dump of bootcampdb.user_purchase within 15s"),
        "{cause}"
    );
    assert_failed_and_released(&env, "dump_purchases");
    env.infra(&["run", "--only", "1"]).ok();

    // A run that connects to a stopped server.
    signal_server(&env, SIGSTOP);
    let out = env.infra(&["run", "--only", "0"]);
    signal_server(&env, SIGCONT);
    let out = out.fails(1);
    assert!(
        out.stderr.contains("step 0 load_purchases failed"),
        "{}",
        out.stderr
    );
    let cause = recorded_cause(&env, "load_purchases");
    assert!(
        cause.contains("did not answer a connection within 3s"),
        "{cause}"
    );
    assert_failed_and_released(&env, "load_purchases");
    env.infra(&["run", "--only", "0"]).ok();
    assert_eq!(last_run(&env)["outcome"], "succeeded");
    env.infra(&["down", "--yes"]).ok();
}
