//! Issue 13's faults and signals on the local target, with real processes:
//! a run stopped by SIGINT, SIGTERM and SIGHUP in each kind of step,
//! PostgreSQL killed in the middle of step 0, two runs (and `down`) at
//! once, and `--from`/`--only` that would read another run's output.
//!
//! Steps 0 and 1 are held in place deterministically by a PostgreSQL lock
//! the test takes on the purchase table; steps 2 and 3 are Spark jobs that
//! run for seconds. The gap between two steps and the inside of step 4's
//! transaction are too short to hit by timing: `infra`'s test-only pause
//! points (`infra::hold`, `INFRA_TEST_HOLD_DIR`) hold them open. After
//! every stop the test checks what the issue asks: the exit code, the step
//! recorded as interrupted, no child left in the stopped step's process
//! group, the lock released, and no row lost or half-loaded.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use infra::record::{Records, RunRecord};
use sqlx::{Connection, PgConnection};

use crate::harness::Env;

/// The newest run record.
pub(crate) fn last_run(env: &Env) -> serde_json::Value {
    let run = Records::new(&env.state()).latest().unwrap().unwrap();
    serde_json::to_value(run).unwrap()
}

pub(crate) fn step_outcome(run: &serde_json::Value, step: &str) -> Option<String> {
    run["steps"]
        .as_array()?
        .iter()
        .find(|s| s["step"] == step)
        .map(|s| s["outcome"].as_str().unwrap().to_owned())
}

/// Waits (a liveness bound, not a timing assertion) until `check` holds.
#[track_caller]
pub(crate) fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn spawn(env: &Env, args: &[&str]) -> Child {
    env.command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` and returns its exit code and stderr.
pub(crate) fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn running(env: &Env, step: &str) -> bool {
    env.state().join("runs").is_dir()
        && std::fs::read_dir(env.state().join("runs"))
            .unwrap()
            .any(|e| e.unwrap().path().extension().is_some_and(|x| x == "json"))
        && step_outcome(&last_run(env), step).as_deref() == Some("running")
}

/// Every process (pid, process group, command line) on the machine.
pub(crate) fn processes() -> Vec<(i32, i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let (Ok(stat), Ok(cmdline)) = (
            std::fs::read_to_string(format!("/proc/{pid}/stat")),
            std::fs::read(format!("/proc/{pid}/cmdline")),
        ) else {
            continue;
        };
        // Field 5 (pgrp) follows the parenthesised command name; a zombie
        // (state Z) has exited already.
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        if rest[0] == "Z" {
            continue;
        }
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        out.push((pid, rest[2].parse().unwrap(), cmdline));
    }
    out
}

/// The process groups of the Spark children working on this state dir.
pub(crate) fn spark_groups(state: &Path) -> Vec<i32> {
    let state = state.display().to_string();
    let mut groups: Vec<i32> = processes()
        .into_iter()
        // The step's own processes: its Spark client (and any JVM it starts).
        // The Spark Connect server that `up` started is the target's, like
        // PostgreSQL, and stays after a run stops.
        .filter(|(_, _, cmd)| {
            cmd.contains(&state)
                && !cmd.contains("SparkConnectServer")
                && (cmd.contains("java") || cmd.contains("python"))
        })
        .map(|(_, group, _)| group)
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// Asserts that no process is left in `groups`, waiting for the kernel to
/// finish killing them.
#[track_caller]
fn assert_groups_gone(groups: &[i32]) {
    wait_for("the stopped step's processes to exit", || {
        !processes().iter().any(|(_, g, _)| groups.contains(g))
    });
}

pub(crate) async fn lock_purchases(env: &Env) -> PgConnection {
    let mut conn = PgConnection::connect_with(&env.db().await).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE bootcampdb.user_purchase IN ACCESS EXCLUSIVE MODE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

pub(crate) async fn purchase_rows(env: &Env) -> i64 {
    let mut conn = PgConnection::connect_with(&env.db().await).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM bootcampdb.user_purchase")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_and_faults_leave_a_true_state_and_lose_no_row() {
    use nix::sys::signal::Signal::{SIGHUP, SIGINT, SIGKILL, SIGTERM};
    let env = Env::new();
    let data = env.path().join("data");
    let data = data.display().to_string();
    env.infra(&["sample", "--out", &data, "--scale", "0.01", "--seed", "5"])
        .ok();

    // Nothing to resume yet: refused, and `run` before `up` leaves nothing.
    let out = env.infra(&["run", "--from", "3"]).fails(1);
    assert!(out.stderr.contains("infra up"), "{}", out.stderr);
    assert!(
        !env.state().join("runs").exists(),
        "run before up left runs/"
    );
    env.infra(&["up"]).ok();
    let out = env.infra(&["run", "--only", "2"]).fails(2);
    assert!(
        out.stderr.contains("no earlier run to resume"),
        "{}",
        out.stderr
    );

    env.infra(&["run", "--data", &data, "--only", "0"]).ok();
    let loaded = purchase_rows(&env).await;
    assert!(loaded > 0);

    // 1. SIGINT during step 0, while a second run and `down` are refused.
    let lock = lock_purchases(&env).await;
    let child = spawn(&env, &["run", "--data", &data]);
    wait_for("step 0 to start", || running(&env, "load_purchases"));
    let pid = child.id();
    let second = env.infra(&["run", "--only", "0"]).fails(1);
    assert!(
        second.stderr.contains(&format!("`infra run` (pid {pid})")),
        "{}",
        second.stderr
    );
    let down = env.infra(&["down", "--yes"]).fails(1);
    assert!(
        down.stderr.contains(&format!("(pid {pid})")),
        "{}",
        down.stderr
    );
    assert!(env.state().join("raw").is_dir(), "down deleted under a run");
    signal(&child, SIGINT);
    let (code, stderr) = finish(child);
    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains("step 0 load_purchases interrupted"),
        "{stderr}"
    );
    assert!(stderr.contains("SIGINT"), "{stderr}");
    drop(lock);
    let run = last_run(&env);
    assert_eq!(step_outcome(&run, "load_purchases").unwrap(), "interrupted");
    assert_eq!(run["outcome"], "interrupted");
    assert_eq!(purchase_rows(&env).await, loaded, "the old rows were lost");
    // Step 0 never finished: what reads its output is refused.
    let out = env.infra(&["run", "--from", "1"]).fails(2);
    assert!(
        out.stderr
            .contains("step 0 load_purchases, which is interrupted")
            && out.stderr.contains("infra run --from 0"),
        "{}",
        out.stderr
    );

    // 2. SIGHUP during step 1 (the terminal closed).
    env.infra(&["run", "--only", "0"]).ok();
    let lock = lock_purchases(&env).await;
    let child = spawn(&env, &["run", "--only", "1"]);
    wait_for("step 1 to start", || running(&env, "dump_purchases"));
    signal(&child, SIGHUP);
    let (code, stderr) = finish(child);
    assert_eq!(code, 129, "{stderr}");
    drop(lock);
    assert_eq!(
        step_outcome(&last_run(&env), "dump_purchases").unwrap(),
        "interrupted"
    );

    // 3. SIGTERM during step 2 (Spark): the JVM and its Python go too.
    let child = spawn(&env, &["run", "--from", "1"]);
    let mut groups = Vec::new();
    wait_for("the tokenizer's JVM", || {
        groups = spark_groups(&env.state());
        running(&env, "tokenize") && !groups.is_empty()
    });
    signal(&child, SIGTERM);
    let (code, stderr) = finish(child);
    assert_eq!(code, 143, "{stderr}");
    assert!(stderr.contains("step 2 tokenize interrupted"), "{stderr}");
    assert_groups_gone(&groups);
    assert_eq!(
        step_outcome(&last_run(&env), "tokenize").unwrap(),
        "interrupted"
    );
    let out = env.infra(&["run", "--from", "3"]).fails(2);
    assert!(
        out.stderr.contains("step 2 tokenize, which is interrupted"),
        "{}",
        out.stderr
    );

    // 4. PostgreSQL killed in the middle of step 0: a clear failure, the old
    // rows intact after a restart, and `--from 0` then succeeds.
    let lock = lock_purchases(&env).await;
    let child = spawn(&env, &["run", "--from", "0"]);
    wait_for("step 0 to start", || running(&env, "load_purchases"));
    let postmaster = std::fs::read_to_string(env.state().join("postgres/data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse::<i32>()
        .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(postmaster), SIGKILL).unwrap();
    let (code, stderr) = finish(child);
    drop(lock);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("step 0 load_purchases failed"), "{stderr}");
    assert_eq!(
        step_outcome(&last_run(&env), "load_purchases").unwrap(),
        "failed"
    );
    env.infra(&["up"]).ok();
    assert_eq!(purchase_rows(&env).await, loaded, "the old rows were lost");
    let resumed = env.infra(&["run", "--from", "0"]).ok();
    assert!(resumed.stdout.contains("succeeded"), "{}", resumed.stdout);

    // 5. SIGINT during step 3, then `--from 3` finishes the same run.
    let child = spawn(&env, &["run", "--only", "3"]);
    let mut groups = Vec::new();
    wait_for("user_behavior's JVM", || {
        groups = spark_groups(&env.state());
        running(&env, "user_behavior") && !groups.is_empty()
    });
    let id = last_run(&env)["id"].clone();
    signal(&child, SIGINT);
    let (code, _) = finish(child);
    assert_eq!(code, 130);
    assert_groups_gone(&groups);
    env.infra(&["run", "--from", "3"]).ok();
    let run = last_run(&env);
    assert_eq!(run["id"], id);
    assert_eq!(run["outcome"], "succeeded");
    // No row lost anywhere: every step's rows in = out + rejected (step 0
    // and 2), and the dump holds exactly the loaded rows.
    let counts = |i: usize, k: &str| run["steps"][i]["counts"][k].as_u64().unwrap();
    for i in [0, 2] {
        assert_eq!(
            counts(i, "rows_in"),
            counts(i, "rows_out") + counts(i, "rows_rejected")
        );
    }
    assert_eq!(counts(1, "rows_out"), counts(0, "rows_out"));
    assert_eq!(counts(0, "rows_out") as i64, purchase_rows(&env).await);
    // Nothing is left locked: `down` now works and leaves nothing.
    env.infra(&["down", "--yes", "--purge"]).ok();
    assert!(!env.state().exists());
}

/// The disk fills while `run --data` copies the inputs, while a run record
/// is saved, and while step 1 dumps to staging: each time a clear error, the
/// previous contents whole, no half-written object or record.
#[test]
fn a_full_disk_fails_clearly_and_leaves_nothing_half_written() {
    let env = Env::new();
    let disk = env.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(mounted.success(), "this test needs root to mount a tmpfs");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&disk);

    // The raw bucket on the small disk, the previous inputs in it.
    let state = env.state();
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::symlink(&disk, state.join("raw")).unwrap();
    std::fs::create_dir_all(disk.join("staging")).unwrap();
    std::os::unix::fs::symlink(disk.join("staging"), state.join("staging")).unwrap();
    env.infra(&[
        "sample",
        "--out",
        &disk.display().to_string(),
        "--scale",
        "0.001",
    ])
    .ok();
    let before = std::fs::read(disk.join("user_purchase.csv")).unwrap();

    // New inputs too big for what is left.
    let big = env.path().join("big");
    env.infra(&[
        "sample",
        "--out",
        &big.display().to_string(),
        "--scale",
        "0.2",
    ])
    .ok();
    env.infra(&["up"]).ok();
    // Fill the disk to the last byte with a ballast file.
    let ballast = disk.join("ballast");
    let mut file = std::fs::File::create(&ballast).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);

    // The copy fails: run records live in runs/ on the big disk, so this
    // exercises the bucket write; the record write is checked below.
    let out = env
        .infra(&["run", "--data", &big.display().to_string(), "--only", "0"])
        .fails(1);
    assert!(out.stderr.contains("No space left"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("cannot write user_purchase.csv to the raw bucket"),
        "{}",
        out.stderr
    );
    let records: Vec<_> = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".json"))
        .collect();
    assert!(
        records.is_empty(),
        "a failed copy recorded a run: {records:?}"
    );
    assert_eq!(
        std::fs::read(disk.join("user_purchase.csv")).unwrap(),
        before
    );
    let leftovers: Vec<String> = std::fs::read_dir(&disk)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "half-written objects: {leftovers:?}");

    // A run record written to a full disk: an error, the old record whole.
    let runs_on_disk = Records::new(&disk.join("state"));
    std::fs::remove_file(&ballast).unwrap();
    let mut run = RunRecord::new("local", chrono::Utc::now());
    runs_on_disk.save(&run).unwrap();
    let mut file = std::fs::File::create(&ballast).unwrap();
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);
    run.start_step(infra::plan::Step::LoadPurchases, chrono::Utc::now());
    let err = runs_on_disk.save(&run).unwrap_err();
    assert!(format!("{err:#}").contains("No space left"), "{err:#}");
    let kept = runs_on_disk.latest().unwrap().unwrap();
    assert!(
        kept.steps.is_empty(),
        "the old record was replaced by a partial one"
    );
    let tmp: Vec<_> = std::fs::read_dir(disk.join("state/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");

    // Staging on the full disk: step 1's dump fails clearly, the record
    // says so, and the previous dump stays whole.
    std::fs::remove_file(&ballast).unwrap();
    env.infra(&["run", "--only", "0"]).ok();
    env.infra(&["run", "--only", "1"]).ok();
    let dump = disk.join("staging/user_purchase.csv");
    let dumped = std::fs::read(&dump).unwrap();
    let mut file = std::fs::File::create(&ballast).unwrap();
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);
    let out = env.infra(&["run", "--only", "1"]).fails(1);
    assert!(
        out.stderr.contains("step 1 dump_purchases failed") && out.stderr.contains("No space left"),
        "{}",
        out.stderr
    );
    let run = Records::new(&state).latest().unwrap().unwrap();
    let step = run.step(infra::plan::Step::DumpPurchases).unwrap();
    assert_eq!(step.outcome, infra::record::Outcome::Failed);
    assert_eq!(
        std::fs::read(&dump).unwrap(),
        dumped,
        "the old dump changed"
    );
    let partial: Vec<_> = std::fs::read_dir(disk.join("staging"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(partial.is_empty(), "half-written objects: {partial:?}");
}

/// What `infra` started for this state dir and still runs, beside the
/// target's own servers (PostgreSQL, the Spark Connect server).
pub(crate) fn stray_processes(state: &Path) -> Vec<String> {
    let state = state.display().to_string();
    processes()
        .into_iter()
        .map(|(_, _, cmd)| cmd)
        .filter(|cmd| {
            cmd.contains(&state)
                && !cmd.contains("SparkConnectServer")
                && !cmd.contains("/bin/postgres")
        })
        .collect()
}

/// The warehouse table's customer ids, or `None` if there is no table.
fn warehouse_ids(env: &Env) -> Option<Vec<i64>> {
    let path = env.state().join("warehouse.duckdb");
    if !path.exists() {
        return None;
    }
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .unwrap();
    let conn = duckdb::Connection::open_with_flags(&path, config).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = 'bootcamp' AND table_name = 'user_behavior_metric'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if tables == 0 {
        return None;
    }
    let mut stmt = conn
        .prepare("SELECT customer_id FROM bootcamp.user_behavior_metric ORDER BY customer_id")
        .unwrap();
    let ids = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<i64>, _>>()
        .unwrap();
    Some(ids)
}

/// A pause point's file (see `infra::hold`): `infra` waits there while it
/// exists, after writing `<point>.reached`.
pub(crate) struct Hold {
    pub(crate) dir: std::path::PathBuf,
}

impl Hold {
    pub(crate) fn set(&self, point: &str) {
        let _ = std::fs::remove_file(self.dir.join(format!("{point}.reached")));
        std::fs::write(self.dir.join(point), b"").unwrap();
    }

    pub(crate) fn reached(&self, point: &str) -> bool {
        self.dir.join(format!("{point}.reached")).exists()
    }

    pub(crate) fn release(&self, point: &str) {
        std::fs::remove_file(self.dir.join(point)).unwrap();
    }
}

/// Lets step 4's load go on once the run has recorded it as interrupted:
/// a load the signal did not stop would now commit.
fn release_once_recorded(env: &Env, hold: &Hold) {
    wait_for("step 4 recorded as interrupted", || {
        step_outcome(&last_run(env), "load_warehouse").as_deref() == Some("interrupted")
    });
    hold.release("warehouse-load");
}

/// Waits for `child` to exit by itself (a liveness bound: a run that never
/// stops fails the test instead of hanging it).
pub(crate) fn exits(mut child: Child) -> (i32, String) {
    wait_for("infra to stop", || child.try_wait().unwrap().is_some());
    finish(child)
}

/// Issue 13: SIGINT, SIGTERM and SIGHUP between two steps (after step N is
/// recorded as succeeded, before step N+1 starts) and during step 4's
/// DuckDB load. Before the fix a signal in step 4 let the load go on on
/// its blocking thread, which committed the new table after the run was
/// recorded as interrupted and the lock released.
#[tokio::test(flavor = "multi_thread")]
async fn signals_between_steps_and_during_the_warehouse_load() {
    use nix::sys::signal::Signal::{SIGHUP, SIGINT, SIGTERM};
    let env = Env::new();
    let hold = Hold {
        dir: env.path().join("holds"),
    };
    std::fs::create_dir_all(&hold.dir).unwrap();
    let env = env.var(infra::hold::ENV, &hold.dir.display().to_string());
    let data = env.path().join("data");
    let data = data.display().to_string();
    env.infra(&["sample", "--out", &data, "--scale", "0.01", "--seed", "7"])
        .ok();
    env.infra(&["up"]).ok();

    // Between steps: (point, signal, exit code, the args of the run, the
    // step that finished, the step that must be recorded as interrupted).
    let cases = [
        (
            "after-0",
            SIGINT,
            130,
            vec!["run", "--data", data.as_str()],
            "load_purchases",
            "dump_purchases",
            1,
        ),
        (
            "after-2",
            SIGTERM,
            143,
            vec!["run", "--from", "1"],
            "tokenize",
            "user_behavior",
            3,
        ),
        (
            "after-3",
            SIGHUP,
            129,
            vec!["run", "--from", "3"],
            "user_behavior",
            "load_warehouse",
            4,
        ),
    ];
    for (point, sig, want, args, done, next, next_number) in cases {
        hold.set(point);
        let child = spawn(&env, &args);
        wait_for(point, || hold.reached(point));
        let id = last_run(&env)["id"].clone();
        assert_eq!(
            step_outcome(&last_run(&env), done).as_deref(),
            Some("succeeded")
        );
        signal(&child, sig);
        // Only now may the run go on: the signal came in the gap.
        hold.release(point);
        let (code, stderr) = finish(child);
        assert_eq!(code, want, "{point}: {stderr}");
        assert!(
            stderr.contains(&format!("step {next_number} {next} interrupted"))
                && stderr.contains(&format!("infra run --from {next_number}")),
            "{point}: {stderr}"
        );
        let run = last_run(&env);
        assert_eq!(run["id"], id);
        assert_eq!(run["outcome"], "interrupted");
        assert_eq!(step_outcome(&run, done).as_deref(), Some("succeeded"));
        assert_eq!(step_outcome(&run, next).as_deref(), Some("interrupted"));
        let stray = stray_processes(&env.state());
        assert!(stray.is_empty(), "{point}: left running: {stray:?}");
        // The step after the gap never ran: no table yet.
        assert_eq!(warehouse_ids(&env), None, "{point}");
        if point == "after-2" {
            // Step 3 was interrupted: step 4 must not load whatever an
            // earlier run left in staging.
            let out = env.infra(&["run", "--only", "4"]).fails(2);
            assert!(
                out.stderr
                    .contains("step 3 user_behavior, which is interrupted")
                    && out.stderr.contains("infra run --from 3"),
                "{}",
                out.stderr
            );
        }
    }

    // During step 4, with no table yet: no table after the stop, and the
    // lock is free for the resume.
    hold.set("warehouse-load");
    let child = spawn(&env, &["run", "--from", "4"]);
    wait_for("step 4's transaction", || hold.reached("warehouse-load"));
    signal(&child, SIGINT);
    release_once_recorded(&env, &hold);
    let (code, stderr) = exits(child);
    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains("step 4 load_warehouse interrupted"),
        "{stderr}"
    );
    assert_eq!(
        step_outcome(&last_run(&env), "load_warehouse").as_deref(),
        Some("interrupted")
    );
    assert_eq!(
        warehouse_ids(&env),
        None,
        "the interrupted load committed a table"
    );
    assert!(stray_processes(&env.state()).is_empty());
    env.infra(&["run", "--from", "4"]).ok();
    let run = last_run(&env);
    assert_eq!(run["outcome"], "succeeded");
    let loaded = warehouse_ids(&env).unwrap();
    let written = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "user_behavior")
        .unwrap()["counts"]["rows_out"]
        .as_u64()
        .unwrap();
    assert_eq!(loaded.len() as u64, written);
    assert!(!loaded.is_empty());

    // During step 4 over an existing table: a sentinel row the load would
    // replace shows whether anything was committed.
    {
        let conn = duckdb::Connection::open(env.state().join("warehouse.duckdb")).unwrap();
        conn.execute_batch("INSERT INTO bootcamp.user_behavior_metric (customer_id) VALUES (-1)")
            .unwrap();
    }
    let mut before = loaded.clone();
    before.insert(0, -1);
    for (sig, want) in [(SIGTERM, 143), (SIGHUP, 129)] {
        hold.set("warehouse-load");
        let child = spawn(&env, &["run", "--from", "4"]);
        wait_for("step 4's transaction", || hold.reached("warehouse-load"));
        signal(&child, sig);
        release_once_recorded(&env, &hold);
        let (code, stderr) = exits(child);
        assert_eq!(code, want, "{stderr}");
        assert_eq!(
            step_outcome(&last_run(&env), "load_warehouse").as_deref(),
            Some("interrupted")
        );
        assert_eq!(
            warehouse_ids(&env).as_ref(),
            Some(&before),
            "{sig:?}: the table changed"
        );
        assert!(stray_processes(&env.state()).is_empty());
    }
    env.infra(&["run", "--from", "4"]).ok();
    assert_eq!(warehouse_ids(&env), Some(loaded));
    assert_eq!(last_run(&env)["outcome"], "succeeded");
    env.infra(&["down", "--yes"]).ok();
}
