//! Issue 21, "a run that nothing else can break", on the local target with
//! real processes: `up` and `down` under another command's lock, `up`'s
//! plan when it will restart Spark, a run killed with SIGKILL (its children,
//! `status`, the resume), and a DuckDB reader in another process during
//! step 4.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use infra::record::Records;

use crate::harness::Env;

/// Waits (a liveness bound, not a timing assertion) until `check` holds.
#[track_caller]
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pids of live (not zombie) processes whose command line holds
/// `needle`.
fn pids_with(needle: &str) -> Vec<i32> {
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
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid` has `file` open.
fn has_open(pid: u32, file: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == file))
}

/// Regression (issue 21): `up` took no lock, and `down` printed what it
/// would delete before finding the state dir in use.
#[test]
fn up_and_down_are_refused_while_another_command_holds_the_state_dir() {
    let env = Env::new();
    std::fs::create_dir_all(env.state().join("raw")).unwrap();
    // This test process is "another infra": it holds the lock.
    let _held = Records::new(&env.state()).lock("run").unwrap();
    let pid = std::process::id();
    let up = env.infra(&["up"]).fails(1);
    assert!(
        up.stderr.contains(&format!("`infra run` (pid {pid})")),
        "{}",
        up.stderr
    );
    assert!(
        !env.state().join("postgres").exists(),
        "up provisioned under another command's lock"
    );
    let down = env.infra(&["down", "--yes"]).fails(1);
    assert!(
        down.stderr.contains(&format!("(pid {pid})")),
        "{}",
        down.stderr
    );
    assert!(
        !down.stderr.contains("delete:"),
        "down listed its deletions before the lock check:\n{}",
        down.stderr
    );
    assert!(env.state().join("raw").is_dir());
    // A dry run changes nothing, so it needs no lock.
    let plan = env.infra(&["up", "--dry-run"]).ok();
    assert!(plan.stderr.contains("PostgreSQL"), "{}", plan.stderr);
}

/// Regression (issue 21): after `kill -9` of a run, `status` said
/// `running` forever, the step's `tokenizer.py` kept running as an orphan,
/// and `up` said "reuse" the Spark server it then restarted. And a DuckDB
/// reader in another process failed step 4 with "Unknown error code".
#[test]
fn a_killed_run_and_a_reader_of_the_warehouse_break_nothing() {
    let env = Env::new();
    let data = env.sample("0.01", Some("3"));
    let data = data.display().to_string();
    env.infra(&["up"]).ok();

    // 1. The plan says "restart" when the Spark settings changed.
    let same = env.infra(&["up", "--dry-run"]).ok();
    assert!(
        same.stderr.contains("Spark Connect: reuse the server"),
        "{}",
        same.stderr
    );
    let changed = env.command(&["up", "--dry-run"]);
    let changed = {
        let mut cmd = changed;
        cmd.env("INFRA_SPARK_DRIVER_MEMORY", "1g");
        cmd.output().unwrap()
    };
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert!(
        stderr.contains("Spark Connect: restart the server")
            && !stderr.contains("Spark Connect: reuse"),
        "{stderr}"
    );

    // Ctrl-C during `up`'s warm-up says what it stopped and how to go on
    // (it exited 130 with no word).
    let mut up = env
        .command(&["up"])
        .env("INFRA_SPARK_WARM_UP", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    while !seen
        .last()
        .is_some_and(|l: &String| l.contains("warming up Spark Connect"))
    {
        seen.push(lines.next().expect("up ended before its warm-up").unwrap());
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    seen.extend(lines.map(Result::unwrap));
    let code = up.wait().unwrap().code();
    let stderr = seen.join("\n");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("up stopped during the Spark Connect warm-up")
            && stderr.contains("hint: `infra up` runs the warm-up again"),
        "{stderr}"
    );

    // 2. SIGKILL during step 2: the tokenizer dies with the run, `status`
    // shows the run interrupted, and `--from 2` resumes it.
    let mut child = env
        .command(&["run", "--data", &data])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut tokenizers = Vec::new();
    wait_for("the tokenizer to start", || {
        // This test's tokenizer: other tests may run one at the same time.
        tokenizers = pids_with(&format!("{}/code/tokenizer.py", env.state().display()));
        !tokenizers.is_empty()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for("the tokenizer to die with its run", || {
        tokenizers
            .iter()
            .all(|pid| !Path::new(&format!("/proc/{pid}/cmdline")).exists())
            || pids_with(&format!("{}/code/tokenizer.py", env.state().display())).is_empty()
    });
    let status = env.infra(&["status"]).ok();
    assert!(status.stdout.contains(" interrupted "), "{}", status.stdout);
    assert!(!status.stdout.contains("┆ running"), "{}", status.stdout);
    let json = env.infra(&["status", "--json"]).ok();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["last_run"]["outcome"], "interrupted");
    let tokenize = &json["last_run"]["steps"][2];
    assert_eq!(tokenize["name"], "tokenize");
    assert_eq!(tokenize["outcome"], "interrupted");
    let id = json["last_run"]["run_id"].clone();
    env.infra(&["run", "--from", "2"]).ok();
    let json = env.infra(&["status", "--json"]).ok();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["last_run"]["run_id"], id);
    assert_eq!(json["last_run"]["outcome"], "succeeded");
    assert!(
        !env.state()
            .join("runs/children")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "a finished run left children listed"
    );

    // 3. A DuckDB reader in another process: `infra query` blocked on a
    // FIFO, its read-only connection open the whole time.
    let warehouse = env.state().join("warehouse.duckdb");
    let before = env
        .infra(&[
            "query",
            "--format",
            "csv",
            "SELECT count(*), sum(customer_id) FROM bootcamp.user_behavior_metric",
        ])
        .ok()
        .stdout;
    let fifo = env.path().join("fifo.csv");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = |env: &Env| -> Child {
        let sql = format!("SELECT * FROM read_csv('{}')", fifo.display());
        let child = env
            .command(&["query", &sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the reader to open the warehouse", || {
            has_open(child.id(), &warehouse)
        });
        child
    };
    // DuckDB may open the file more than once (to sniff it, then to
    // scan it): feed each open until the query is done.
    let release = |mut child: Child| {
        use std::os::unix::fs::OpenOptionsExt as _;
        wait_for("the reader to finish", || {
            if let Ok(mut writer) = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&fifo)
            {
                let _ = std::io::Write::write_all(&mut writer, b"a\n1\n");
            }
            child.try_wait().unwrap().is_some()
        });
    };

    // With a short wait: a clear failure that names the reader, and the
    // table as it was.
    let holder = reader(&env);
    let failed = env
        .command(&["run", "--only", "4"])
        .env("INFRA_WAREHOUSE_LOCK_WAIT_SECS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("(pid {})", holder.id())) && stderr.contains("query"),
        "the error does not name the reader:\n{stderr}"
    );
    assert!(stderr.contains("infra run --from 4"), "{stderr}");
    assert!(!stderr.contains("Unknown error code"), "{stderr}");
    release(holder);
    let after = env
        .infra(&[
            "query",
            "--format",
            "csv",
            "SELECT count(*), sum(customer_id) FROM bootcamp.user_behavior_metric",
        ])
        .ok()
        .stdout;
    assert_eq!(after, before, "a failed step 4 changed the table");

    // With the default wait: step 4 says it waits, and loads once the
    // reader is gone.
    let holder = reader(&env);
    let mut run = env
        .command(&["run", "--only", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(run.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines
            .next()
            .expect("step 4 ended without saying it waits")
            .unwrap();
        let waiting =
            line.contains("waiting up to") && line.contains(&format!("pid {}", holder.id()));
        seen.push(line);
        if waiting {
            break;
        }
    }
    release(holder);
    seen.extend(lines.map(Result::unwrap));
    let status = run.wait().unwrap();
    assert!(status.success(), "{}", seen.join("\n"));
    let json = env.infra(&["status", "--json"]).ok();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["last_run"]["steps"][4]["outcome"], "succeeded");
    assert_eq!(json["last_run"]["steps"][4]["attempt"], 3);

    // 4. A failed Spark step names Spark's error class first, keeps the
    // JVM's frames in the log file it names, and `--json` has it all.
    std::fs::remove_dir_all(env.state().join("staging/reviews")).unwrap();
    let failed = env.infra(&["run", "--only", "3", "--json"]).fails(1);
    let first_lines: Vec<&str> = failed
        .stderr
        .lines()
        .filter(|l| l.contains("error:") || l.contains("Caused by:"))
        .collect();
    assert!(
        first_lines
            .iter()
            .take(2)
            .any(|l| l.contains("[PATH_NOT_FOUND] Path does not exist")),
        "{}",
        failed.stderr
    );
    assert!(
        !failed.stderr.contains("\tat org.apache"),
        "frames on the terminal:\n{}",
        failed.stderr
    );
    let log = failed
        .stderr
        .lines()
        .find_map(|l| {
            l.split_once("stack frames: ")
                .map(|(_, p)| p.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no log file named:\n{}", failed.stderr));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("at org.apache.spark"), "{log}");
    let json: serde_json::Value = serde_json::from_str(&failed.stdout).unwrap();
    let error = json["steps"][3]["error"].as_str().unwrap();
    assert!(
        error.contains("[PATH_NOT_FOUND] Path does not exist"),
        "{error}"
    );

    // 5. `down --dry-run` changes nothing; `down` keeps the history, which
    // `status` still shows; `down --purge` removes it (issue 21).
    let dry = env.infra(&["down", "--dry-run"]).ok();
    assert!(dry.stderr.contains("warehouse.duckdb"), "{}", dry.stderr);
    assert!(dry.stderr.contains("down --purge"), "{}", dry.stderr);
    assert!(warehouse.exists(), "down --dry-run deleted");
    env.infra(&["down", "--yes"]).ok();
    assert!(!warehouse.exists());
    assert!(env.state().join("runs").is_dir() && env.state().join("reports").is_dir());
    let status = env.infra(&["status"]).ok();
    assert!(
        status.stdout.contains(id.as_str().unwrap()),
        "{}",
        status.stdout
    );
    env.infra(&["down", "--yes", "--purge"]).ok();
    assert!(!env.state().exists());
}

/// Regression (issue 21): `--state-dir "/tmp/x y"` made the Spark Connect
/// server exit with "(no log)" half-way through `up`. Now `up` and `run`
/// refuse it before creating anything, saying why, and `doctor` checks it.
#[test]
fn a_state_dir_path_spark_cannot_carry_is_refused_up_front() {
    let env = Env::new();
    for name in ["x y", "a#b"] {
        let state = env.path().join(name);
        let infra = |args: &[&str]| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_infra"))
                .current_dir(env.path())
                .env("NO_COLOR", "1")
                .env_remove("INFRA_STATE_DIR")
                .arg("--state-dir")
                .arg(&state)
                .args(args)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        for verb in [&["up"][..], &["run"][..]] {
            let (code, _, stderr) = infra(verb);
            assert_eq!(code, Some(2), "{verb:?} {name}: {stderr}");
            assert!(
                stderr.contains("the state dir") && stderr.contains("hint: choose a path"),
                "{verb:?} {name}: {stderr}"
            );
            assert!(!state.exists(), "{verb:?} created {}", state.display());
        }
        let (code, stdout, stderr) = infra(&["doctor"]);
        assert_eq!(code, Some(1), "{stdout}{stderr}");
        let all = format!("{stdout}{stderr}");
        assert!(all.contains("state dir path"), "{all}");
    }
}

/// Regression (issue 21): run from a subdirectory, `infra` looked for
/// `./.infra` and `./infra.toml` only, and everything seemed absent. It
/// now searches upward as git and cargo do, and `-v` says what it found.
#[test]
fn the_state_dir_and_config_are_found_from_a_subdirectory() {
    let env = Env::new();
    let root = env.path().join("project");
    let sub = root.join("a/b");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(
        root.join("infra.toml"),
        "[warehouse]\ntable = \"found_it\"\n",
    )
    .unwrap();
    let config = |dir: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_infra"))
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env_remove("INFRA_STATE_DIR")
            .env_remove("RUST_LOG")
            .args(["-v", "config"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (stdout, stderr) = config(&sub);
    assert!(stdout.contains("found_it"), "{stdout}");
    assert!(
        stdout.contains(&root.join(".infra").display().to_string()),
        "{stdout}"
    );
    assert!(
        stderr.contains(&root.join("infra.toml").display().to_string()),
        "-v does not say what it found:\n{stderr}"
    );
    // A `.infra` state dir nearer than the infra.toml wins.
    std::fs::create_dir_all(root.join("a/.infra")).unwrap();
    let (stdout, _) = config(&sub);
    assert!(
        stdout.contains(&root.join("a/.infra").display().to_string()),
        "{stdout}"
    );
    assert!(!stdout.contains("found_it"), "{stdout}");
}

/// Issue 21's smaller things: `-q` silences everything but warnings and
/// errors, as cargo's does (it only turned bars into lines), and
/// `--scale 0` is a usage error (it exited 1).
#[test]
fn quiet_is_quiet_and_a_zero_scale_is_a_usage_error() {
    let env = Env::new();
    let out = env.path().join("q").display().to_string();
    let loud = env
        .infra(&["sample", "--out", &out, "--scale", "0.001"])
        .ok();
    assert!(!loud.stderr.is_empty(), "sample says nothing without -q");
    let quiet = env
        .infra(&["-q", "sample", "--out", &out, "--scale", "0.001", "--force"])
        .ok();
    assert_eq!(quiet.stderr, "", "-q printed");
    let zero = env
        .infra(&["sample", "--out", &out, "--scale", "0"])
        .fails(2);
    assert!(
        zero.stderr.contains("--scale must be above 0"),
        "{}",
        zero.stderr
    );
}

/// A TEST-ONLY service-account key whose tokens come from `token_uri`.
fn service_account_key(env: &Env, token_uri: &str) -> std::path::PathBuf {
    let key = env.path().join("key.json");
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "test-only",
        "private_key": gcp_fakes::stack::TEST_KEY,
        "client_email": "nobody@test-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    });
    std::fs::write(&key, json.to_string()).unwrap();
    key
}

/// Regression (issue 21): `doctor --target gcp` showed ✓ and exited 0 with
/// a credentials file that cannot yield a token. It now asks for one.
#[test]
fn doctor_asks_the_credentials_for_a_token() {
    let env = Env::new();
    // Nothing listens there: no token can come.
    let key = service_account_key(&env, "http://127.0.0.1:9/token");
    let out = env
        .command(&["--target", "gcp", "doctor"])
        .env("GOOGLE_APPLICATION_CREDENTIALS", &key)
        .env("INFRA_PROJECT", "test-project")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    let line = all
        .lines()
        .find(|l| l.contains("a token"))
        .unwrap_or_else(|| panic!("no token check:\n{all}"));
    assert!(
        line.contains("✗") && line.contains("gave none"),
        "{line}\n{all}"
    );
}

/// Regression (issue 21): `up --target gcp` with no route to the token
/// endpoint said "Hyper error: client error (Connect)" twice and hinted
/// that the caller needs roles/serviceusage.serviceUsageAdmin.
#[test]
fn up_with_no_route_to_google_says_so_and_hints_at_the_network() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    for (token_uri, cause) in [
        (
            "http://oauth2.invalid/token".to_owned(),
            "cannot resolve oauth2.invalid (DNS)".to_owned(),
        ),
        (
            format!("http://127.0.0.1:{port}/token"),
            format!("cannot connect to 127.0.0.1:{port}: connection refused"),
        ),
    ] {
        let env = Env::new();
        let key = service_account_key(&env, &token_uri);
        let out = env
            .command(&["--target", "gcp", "up", "--yes"])
            .env("GOOGLE_APPLICATION_CREDENTIALS", &key)
            .env("INFRA_PROJECT", "test-project")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let report = &stderr[stderr.find("error: ").expect("an error")..];
        assert!(report.contains(&cause), "no `{cause}`:\n{report}");
        assert!(!report.contains("roles/"), "{report}");
        assert_eq!(
            report.matches("client error (Connect)").count(),
            0,
            "{report}"
        );
        assert_eq!(report.matches("hint:").count(), 1, "{report}");
        let last = report.lines().last().unwrap();
        assert!(
            last.starts_with("hint: ") && last.contains("endpoints.*"),
            "{report}"
        );
    }
}

/// Regression (issue 21): `report -o /nonexistent/dir/x.html` created the
/// directories it named. It now fails before any work and creates nothing.
#[test]
fn report_to_a_missing_directory_fails_and_creates_none() {
    let env = Env::new();
    let mut run = infra::record::RunRecord::new("local", chrono::Utc::now());
    run.finish(chrono::Utc::now());
    Records::new(&env.state()).save(&run).unwrap();
    let missing = env.path().join("no/such/dir");
    let page = missing.join("x.html");
    let out = env
        .infra(&["report", "-o", &page.display().to_string()])
        .fails(1);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(
        !env.path().join("no").exists(),
        "report created directories"
    );
}

/// Regression (issue 21): `-v` already showed infra's debug logs, so `-vv`
/// added nothing of infra's; the README says `-v` is commands and child
/// output, `-vv` adds debug logs.
#[test]
fn v_and_vv_do_what_the_readme_says() {
    let env = Env::new();
    let v = env.infra(&["-v", "doctor"]);
    assert!(
        v.stderr.contains("running "),
        "-v logs no command:\n{}",
        v.stderr
    );
    assert!(
        v.stderr.to_lowercase().contains("openjdk") || v.stderr.contains("java version"),
        "-v shows no child output:\n{}",
        v.stderr
    );
    assert!(
        !v.stderr.contains("resolved settings"),
        "-v shows debug logs:\n{}",
        v.stderr
    );
    let vv = env.infra(&["-vv", "doctor"]);
    assert!(
        vv.stderr.contains("resolved settings"),
        "-vv shows no debug logs:\n{}",
        vv.stderr
    );
    let plain = env.infra(&["doctor"]);
    assert!(!plain.stderr.contains("running "), "{}", plain.stderr);
}

/// Regression (issue 21): `run --dry-run --json` printed text.
#[test]
fn run_dry_run_json_prints_json() {
    let env = Env::new();
    let out = env.infra(&["run", "--dry-run", "--json"]).ok();
    let view: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", out.stdout));
    assert_eq!(view["dry_run"], true);
    assert_eq!(view["target"], "local");
    assert_eq!(view["steps"].as_array().unwrap().len(), 5, "{view:#}");
    assert_eq!(view["steps"][2]["name"], "tokenize");
}

/// Regression (issue 21): a typo in an `INFRA_*` variable was ignored in
/// silence, where the same typo in infra.toml is caught.
#[test]
fn a_mistyped_infra_variable_is_warned_about() {
    let env = Env::new().var("INFRA_SPARK_MASTR", "local[2]");
    let out = env.infra(&["config"]).ok();
    assert!(
        out.stderr.contains("INFRA_SPARK_MASTR")
            && out.stderr.contains("did you mean INFRA_SPARK_MASTER?"),
        "{}",
        out.stderr
    );
}

/// Regression (issue 21): with stderr not a terminal, each transfer began
/// with a line "upload user_purchase.csv: 0 B of 1.94 MiB, 0s". It now has
/// one line, when it ends.
#[test]
fn a_transfer_off_a_terminal_is_one_line_and_status_says_how_to_open_psql() {
    let env = Env::new();
    let data = env.sample("0.01", Some("3"));
    let data = data.display().to_string();
    env.infra(&["up"]).ok();
    let out = env.infra(&["run", "--data", &data, "--only", "0"]).ok();
    assert!(!out.stderr.contains(": 0 B of"), "{}", out.stderr);
    for file in ["user_purchase.csv", "movie_review.csv"] {
        let ends: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains("copied") && l.contains(file))
            .collect();
        assert_eq!(ends.len(), 1, "{file}:\n{}", out.stderr);
        assert!(
            ends[0].contains("iB") && ends[0].contains("s)"),
            "{}",
            ends[0]
        );
    }

    // Regression (issue 21): nothing said how to open psql on the local
    // server. `status` prints the command, naming the password's file, never
    // the password, and the command works as printed.
    let status = env.infra(&["status"]).ok().stdout;
    let line = status
        .lines()
        .find(|l| l.trim_start().starts_with("psql "))
        .unwrap_or_else(|| panic!("no psql line:\n{status}"));
    let command = line.trim_start().trim_start_matches("psql").trim_start();
    let password_file = env.state().join("postgres.password");
    let password = std::fs::read_to_string(&password_file).unwrap();
    assert!(
        !status.contains(password.trim()),
        "status prints the password"
    );
    assert!(command.contains("postgresql://"), "{line}");
    assert!(
        command.contains(&password_file.display().to_string()),
        "{line}"
    );
    let json = env.infra(&["status", "--json"]).ok().stdout;
    assert!(json.contains("postgresql://") && !json.contains(password.trim()));
    let rows = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{command} -tAc 'select count(*) from {}'",
            infra::plan::keys::PURCHASE_TABLE
        ))
        .output()
        .unwrap();
    assert!(
        rows.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&rows.stderr)
    );
    let count: u64 = String::from_utf8_lossy(&rows.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(count > 0);
    env.infra(&["down", "--yes"]).ok();
}

/// Regression (issue 21): `query` held the whole result before writing a
/// row (`range(20000000) --format csv | head -1` took 1.8 GB). Rows now go
/// out as DuckDB produces them: those before a failure at row 10,000,000
/// are written (buffered, none were), and a table stops at its limit.
#[test]
fn query_streams_its_rows() {
    let env = Env::new();
    std::fs::create_dir_all(env.state()).unwrap();
    duckdb::Connection::open(env.state().join("warehouse.duckdb")).unwrap();
    let sql = "select case when i < 10000000 then i else error('boom') end as n from range(20000000) t(i)";
    let out = env.infra(&["query", sql, "--format", "csv"]).fails(1);
    // DuckDB reports the failing row's error, or, when another of its
    // threads saw it first, "Interrupted!": either way the query failed.
    assert!(out.stderr.contains("the query failed"), "{}", out.stderr);
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("n"), "no header before the failure");
    assert_eq!(lines.next(), Some("0"), "no row before the failure");
    let jsonl = env
        .infra(&["query", "select 1 as a, null as b", "--format", "jsonl"])
        .ok();
    assert_eq!(jsonl.stdout, "{\"a\": 1, \"b\": null}\n");
    let table = env
        .infra(&["query", "select * from range(5000)", "--limit", "3"])
        .ok();
    assert!(
        table.stdout.contains("the first 3 of 5000 rows"),
        "{}",
        table.stdout
    );
    let closed = env.infra_closed_stdout(&[
        "query",
        "select * from range(1000000000)",
        "--format",
        "csv",
    ]);
    assert_eq!(closed.status, 0, "{}", closed.stderr);
}

/// Regression (issue 21): a verb's help mixed the global flags into its
/// own, and bash completion offered nothing after `--from` and `--only`.
#[test]
fn help_puts_a_verbs_own_options_first_and_completion_knows_the_steps() {
    let env = Env::new();
    let help = env.infra(&["run", "--help"]).ok().stdout;
    let globals = help
        .find("Global options:")
        .unwrap_or_else(|| panic!("no global options heading:\n{help}"));
    for own in ["--data", "--from", "--only", "--dry-run"] {
        let at = help.find(own).unwrap();
        assert!(
            at < globals,
            "{own} is not among run's own options:\n{help}"
        );
    }
    for global in ["--target", "--state-dir", "--verbose"] {
        let at = help.find(global).unwrap();
        assert!(at > globals, "{global} is not apart:\n{help}");
    }
    let bash = env.infra(&["completions", "bash"]).ok().stdout;
    let after_from = bash
        .split("--from)")
        .nth(1)
        .unwrap_or_else(|| panic!("no --from case in the bash completion"));
    let case = &after_from[..after_from.find(";;").unwrap()];
    for step in ["0", "load_purchases", "tokenize", "4", "load_warehouse"] {
        assert!(
            case.contains(step),
            "`--from` does not complete {step}:\n{case}"
        );
    }
}

/// A stand-in for `program` in `env`'s `bin/`: it notes each call's first
/// argument in `marks/started`, every signal it gets in `marks/signals`
/// (SIGKILL leaves no note), stops on SIGINT or SIGTERM, and otherwise
/// runs until it is stopped.
fn stalling_tool(env: &Env, program: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = env.path().join("bin");
    let marks = env.path().join("marks");
    for dir in [&bin, &marks] {
        std::fs::create_dir_all(dir).unwrap();
        // The server's user runs initdb, and writes its notes here too.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let script = bin.join(program);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             trap 'echo INT >> {m}/signals; exit 1' INT\n\
             trap 'echo TERM >> {m}/signals; exit 1' TERM\n\
             echo \"$1\" >> {m}/started\n\
             while :; do sleep 0.1; done\n",
            m = marks.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    (std::path::PathBuf::from(path), marks)
}

/// Sends `signal` to the `infra` in `cmd` once `marks/started` exists, and
/// returns its exit code and stderr.
fn stop_when_started(
    mut cmd: std::process::Command,
    marks: &Path,
    signal: nix::sys::signal::Signal,
) -> (Option<i32>, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = marks.join("started");
    wait_for("the stand-in to start", || started.exists());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Regression (issue 21): a signal during `down --target gcp` (and `up`)
/// killed `infra` at once, leaving terraform running on its own after
/// SIGTERM, or, with the signal guard, SIGKILLed terraform, which loses its
/// state lock. terraform now gets one SIGINT, infra waits for it, and says
/// what stopped and how to go on.
#[test]
fn a_signal_during_terraform_reaches_it_as_one_sigint_and_down_says_how_to_resume() {
    use nix::sys::signal::Signal;
    for (signal, code) in [(Signal::SIGTERM, 143), (Signal::SIGINT, 130)] {
        let env = Env::new();
        let (path, marks) = stalling_tool(&env, "terraform");
        let key = service_account_key(&env, "http://127.0.0.1:9/token");
        let mut cmd = env.command(&["--target", "gcp", "down", "--yes"]);
        cmd.env("PATH", &path)
            .env("GOOGLE_APPLICATION_CREDENTIALS", &key)
            .env("INFRA_PROJECT", "test-project");
        let (got, stderr) = stop_when_started(cmd, &marks, signal);
        assert_eq!(got, Some(code), "{signal}: {stderr}");
        assert_eq!(
            std::fs::read_to_string(marks.join("started")).unwrap(),
            "init\n",
            "{stderr}"
        );
        // One SIGINT, whatever infra got, and no SIGKILL before it: the
        // stand-in noted it on its way out.
        assert_eq!(
            std::fs::read_to_string(marks.join("signals")).unwrap_or_default(),
            "INT\n",
            "{signal}: {stderr}"
        );
        assert!(
            stderr.contains(
                "error: down stopped while planning the destroy (terraform init and plan)"
            ) && stderr.contains("`terraform init` stopped cleanly after its SIGINT"),
            "{stderr}"
        );
        let last = stderr.trim_end().lines().last().unwrap();
        assert_eq!(
            last, "hint: `infra down` again plans the destroy of what is left",
            "{stderr}"
        );
        assert!(!stderr.contains("force-unlock"), "{stderr}");
    }
}

/// Regression (issue 21): Ctrl-C while local `up` set PostgreSQL up exited
/// 130 with no word. It now says what it stopped, and the child is gone.
#[test]
fn ctrl_c_while_local_up_sets_up_postgres_says_what_it_stopped() {
    let env = Env::new();
    let (path, marks) = stalling_tool(&env, "initdb");
    let mut cmd = env.command(&["up"]);
    cmd.env("PATH", &path);
    let (got, stderr) = stop_when_started(cmd, &marks, nix::sys::signal::Signal::SIGINT);
    assert_eq!(got, Some(130), "{stderr}");
    assert!(
        stderr.contains(
            "error: up stopped while setting up PostgreSQL (initdb, then starting the server)"
        ),
        "{stderr}"
    );
    let last = stderr.trim_end().lines().last().unwrap();
    assert_eq!(
        last, "hint: `infra up` again picks up where it stopped",
        "{stderr}"
    );
    let script = env.path().join("bin/initdb").display().to_string();
    wait_for("the stalled initdb to be killed", || {
        pids_with(&script).is_empty()
    });
}

/// Regression (issue 21): `sample`, `man` and `completions` took
/// `--target` (and the other flags that choose settings) and ignored it;
/// `infra man` named infra-run(1) and the other pages, which were missing.
#[test]
fn commands_that_read_no_settings_refuse_their_flags_and_each_command_has_a_page() {
    let env = Env::new();
    let out = env.path().join("data").display().to_string();
    for args in [
        &["--target", "gcp", "sample", "--out", &out][..],
        &["man", "--target", "local"],
        &["completions", "bash", "--config", "x.toml"],
        &["sample", "--out", &out, "--state-dir", "s"],
        &[
            "man",
            "--impersonate-service-account",
            "a@b.iam.gserviceaccount.com",
        ],
    ] {
        let refused = env.infra(args).fails(2);
        assert!(
            refused.stderr.contains("takes no --"),
            "{args:?}: {}",
            refused.stderr
        );
    }
    assert!(!env.path().join("data").exists(), "sample wrote data");
    // -v and -q still apply.
    env.infra(&["-q", "completions", "bash"]).ok();
    let page = env.infra(&["man", "run"]).ok().stdout;
    assert!(page.contains("infra\\-run"), "{page}");
    assert!(page.contains("\\-\\-from"), "{page}");
    for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES"] {
        assert!(page.contains(section), "no {section}:\n{page}");
    }
    env.infra(&["man", "no-such-command"]).fails(2);
}
