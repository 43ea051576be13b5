//! What a new user sees: progress on a real terminal, the summary and its
//! `--json`, the HTML report in a real browser, `doctor`, completions.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Env, regex_escape};

/// Redactions for anything that changes from run to run.
fn filters(env: &Env) -> Vec<(String, String)> {
    vec![
        (
            regex_escape(&env.path().display().to_string()),
            "[TMP]".into(),
        ),
        (r"\d{8}T\d{6}Z-[0-9a-f]{4}".into(), "[RUN_ID]".into()),
        (
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00".into(),
            "[TIME]".into(),
        ),
        (
            r#""seconds": [0-9.]+"#.into(),
            r#""seconds": [SECS]"#.into(),
        ),
        (r"\d+\.\d+s in steps".into(), "[SECS]s in steps".into()),
        (r"127\.0\.0\.1:\d+".into(), "127.0.0.1:[PORT]".into()),
        (r"\(pid \d+\)".into(), "(pid [PID])".into()),
        (
            r#""[^"]*/pyspark-venv-[0-9a-f]+""#.into(),
            r#""[CACHE]/pyspark-venv-[HASH]""#.into(),
        ),
    ]
}

/// The seconds column of the summary table: each step's time, redacted.
fn redact_table_seconds(table: &str) -> String {
    table
        .lines()
        .map(|line| {
            let cells: Vec<&str> = line.split('┆').collect();
            if cells.len() == 6 && !cells[2].contains("seconds") {
                let width = cells[2].chars().count();
                let mut cells: Vec<String> = cells.iter().map(|c| (*c).to_owned()).collect();
                cells[2] = format!("{:^width$}", "[S]");
                cells.join("┆")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A private tmux server, killed when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux {
            socket: format!("infra-it-{}", std::process::id()),
        }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket]);
        cmd
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "run"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Runs `infra run` in a tmux pane (a real pseudo-terminal), watching the
/// screen while it runs. Returns every distinct screen seen, and the last.
fn run_in_terminal(env: &Env, data: &Path) -> (Vec<String>, String) {
    let tmux = Tmux::new();
    let shell = format!(
        "cd {dir} && env -i HOME={home} PATH={path} TERM=xterm-256color NO_COLOR=1 LANG=C.UTF-8 {bin} --state-dir {state} run --data {data}; echo EXIT=$?; sleep 600",
        dir = quote(&env.path().display().to_string()),
        home = quote(&std::env::var("HOME").unwrap()),
        path = quote(&std::env::var("PATH").unwrap()),
        bin = quote(env!("CARGO_BIN_EXE_infra")),
        state = quote(&env.state().display().to_string()),
        data = quote(&data.display().to_string()),
    );
    let started = tmux
        .cmd()
        .args([
            "new-session",
            "-d",
            "-s",
            "run",
            "-x",
            "160",
            "-y",
            "50",
            &shell,
        ])
        .status()
        .unwrap();
    assert!(started.success(), "tmux did not start");
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let screen = tmux.screen();
        if seen.last() != Some(&screen) {
            seen.push(screen.clone());
        }
        if screen.contains("EXIT=") {
            return (seen, screen);
        }
        assert!(Instant::now() < deadline, "the run did not end:\n{screen}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The flags the issue gives for a headless Chromium with no network: every
/// host name fails to resolve and every proxied request goes nowhere.
fn chromium(user_data: &Path) -> Command {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", user_data.display()));
    cmd
}

#[test]
fn a_run_on_a_terminal_shows_progress_then_a_summary_json_and_a_report() {
    let env = Env::new();
    let data = env.sample("0.01", Some("5"));
    env.infra(&["up"]).ok();

    // Progress on a real terminal: live while Spark runs, gone at the end.
    let (screens, last) = run_in_terminal(&env, &data);
    assert!(last.contains("EXIT=0"), "the run failed:\n{last}");
    for job in ["spark tokenizer", "spark user_behavior"] {
        // The live spinner: state, then elapsed time in brackets.
        let live = format!("{job}: running [");
        assert!(
            screens.iter().any(|s| s.contains(&live)),
            "no `{live}` line was ever on screen; screens seen:\n{}",
            screens.join("\n-----\n")
        );
        assert!(
            !last.contains(&format!("{job}: running")),
            "a progress line is left on screen:\n{last}"
        );
    }
    assert!(last.contains("4 load_warehouse"), "{last}");
    assert!(last.contains("report: "), "{last}");

    // The summary table, and the same run as JSON.
    let status = env.infra(&["status"]).ok().stdout;
    let table = status
        .split_once("\nrun ")
        .map(|(_, t)| format!("run {t}"))
        .unwrap();
    let filters = filters(&env);
    let filters: Vec<(&str, &str)> = filters
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    insta::with_settings!({ filters => filters.clone() }, {
        insta::assert_snapshot!("summary_table", redact_table_seconds(&table));
    });
    let json = env.infra(&["status", "--json"]).ok().stdout;
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["last_run"]["outcome"], "succeeded");
    assert_eq!(parsed["last_run"]["steps"].as_array().unwrap().len(), 5);
    let report = parsed["last_run"]["report"].as_str().unwrap();
    assert!(
        report.ends_with(".html") && Path::new(report).is_file(),
        "{report}"
    );
    insta::with_settings!({ filters => filters.clone() }, {
        insta::assert_snapshot!("status_json", json);
    });
    let only = env
        .infra(&["run", "--only", "load_warehouse", "--json"])
        .ok()
        .stdout;
    let only: serde_json::Value = serde_json::from_str(&only).unwrap();
    assert_eq!(only["schema"], 1);
    assert_eq!(only["steps"][4]["name"], "load_warehouse");
    let report = PathBuf::from(only["report"].as_str().unwrap());
    assert!(report.is_file(), "{}", report.display());
    let plan = env.infra(&["plan", "--json"]).ok().stdout;
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(plan["run"].as_array().unwrap().len(), 5);
    assert_eq!(plan["run"][2]["name"], "tokenize");

    // The report, opened by a real browser with no network.
    let page = env.path().join("report.html");
    env.infra(&["report", "-o", &page.display().to_string()])
        .ok();
    let html = std::fs::read_to_string(&page).unwrap();
    for external in ["<script", "<link", "src=", "url(", "http://", "https://"] {
        assert!(!html.contains(external), "the report loads {external}");
    }
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&out_dir).unwrap();
    let screenshot = out_dir.join("report.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = format!("file://{}", page.display());
    let shot = chromium(&env.path().join("chromium-shot"))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--window-size=1100,2400")
        .arg(&url)
        .output()
        .expect("chromium runs (scripts/setup.sh installs it with SETUP_DEV=1)");
    assert!(
        shot.status.success() && screenshot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    let dom = chromium(&env.path().join("chromium-dom"))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    // One timeline bar per step, each named.
    assert_eq!(
        dom.matches("<rect class=\"bar succeeded\"").count(),
        5,
        "{dom}"
    );
    for step in [
        "load_purchases",
        "dump_purchases",
        "tokenize",
        "user_behavior",
        "load_warehouse",
    ] {
        assert!(
            dom.contains(&format!("class=\"bar succeeded\" data-step=\"{step}\"")),
            "{step}"
        );
    }
    // The metric's first 20 rows, in customer-id order, as the warehouse has them.
    let rows = dom
        .split("<table id=\"metric-rows\">")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    let body = rows.split("<tbody>").nth(1).unwrap();
    assert_eq!(body.matches("<tr>").count(), 20, "{rows}");
    let first = env
        .infra(&[
            "query",
            "--format",
            "csv",
            "SELECT customer_id FROM bootcamp.user_behavior_metric ORDER BY customer_id LIMIT 20",
        ])
        .ok()
        .stdout;
    for id in first.lines().skip(1) {
        assert!(
            body.contains(&format!("<td class=\"num\">{id}</td>")),
            "{id} missing"
        );
    }
    // Rejections, by reason, for the two steps that reject.
    assert!(
        dom.contains("data-step=\"load_purchases\"><caption>"),
        "no purchase reasons"
    );
    assert!(
        dom.contains("data-step=\"tokenize\"><caption>"),
        "no review reasons"
    );
    eprintln!("report screenshot: {}", screenshot.display());
}

#[test]
fn doctor_says_what_is_missing_and_how_to_fix_it() {
    let env = Env::new();
    let cache = env.path().join("cache");
    let env = env.var("INFRA_CACHE_DIR", &cache.display().to_string());
    let run = env.infra(&["doctor"]).fails(1);
    let tmp = regex_escape(&env.path().display().to_string());
    insta::with_settings!({ filters => vec![
        (tmp.as_str(), "[TMP]"),
        (r"/usr/lib/postgresql/\d+/bin|/usr/bin|/usr/local/bin", "[BIN]"),
        (r"Java \d+", "Java [N]"),
        (r"\d+\.\d GiB free in [^\s]+", "[N] GiB free in [DIR]"),
        (r"e\.g\. \d+", "e.g. [PORT]"),
        (r"pyspark-venv-[0-9a-f]+", "pyspark-venv-[HASH]"),
        (r"  ✓ `postgres` user.*\n", ""),
        // Free space is the machine's, not the test's: its line stays,
        // its verdict is redacted.
        (
            r"  [✓✗] free disk \(([a-z ]+)\) +[^\n]*\n(      fix: [^\n]*\n)?",
            "  [✓/✗] free disk ($1) [FREE SPACE]\n",
        ),
    ]}, {
        insta::assert_snapshot!("doctor_local", run.stdout);
    });
    assert!(
        run.stderr
            .contains("missing for the local target; the fixes are above"),
        "{}",
        run.stderr
    );

    let gcp = Env::new();
    let home = gcp.path().join("home").display().to_string();
    let gcp = gcp
        .var("HOME", &home)
        .var("NO_GCE_CHECK", "True")
        .var("CLOUDSDK_CONFIG", "");
    let mut cmd = gcp.command(&["--target", "gcp", "doctor"]);
    cmd.env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tmp = regex_escape(&gcp.path().display().to_string());
    insta::with_settings!({ filters => vec![
        (tmp.as_str(), "[TMP]"),
        (r"\d+\.\d+\.\d+ at [^\s]+", "[VERSION] at [PATH]"),
    ]}, {
        insta::assert_snapshot!("doctor_gcp", stdout);
    });
}

#[test]
fn completions_and_the_man_page_come_from_the_cli() {
    let env = Env::new();
    let bash = env.infra(&["completions", "bash"]).ok().stdout;
    assert!(
        bash.contains("complete -F _infra") && bash.contains("doctor"),
        "{bash}"
    );
    let zsh = env.infra(&["completions", "zsh"]).ok().stdout;
    assert!(zsh.starts_with("#compdef infra"), "{zsh}");
    let fish = env.infra(&["completions", "fish"]).ok().stdout;
    assert!(
        fish.contains(r#"complete -c infra -n "__fish_infra_using_subcommand run" -l json"#),
        "{fish}"
    );
    // bash loads the script and completes with it: a verb from its start,
    // and a verb's own flag.
    let script = env.write("infra.bash", &bash);
    let complete = |words: &str, cur: &str, prev: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                r#"source "$0"; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _infra infra {cur} {prev}; printf '%s\n' "${{COMPREPLY[@]}}""#
            ))
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(complete("infra doc", "doc", "infra").trim(), "doctor");
    assert_eq!(
        complete("infra status --j", "--j", "status").trim(),
        "--json"
    );
    let man = env.infra(&["man"]).ok().stdout;
    assert!(man.starts_with(".ie") || man.contains(".TH infra"), "{man}");
    assert!(man.contains("doctor") && man.contains("report"), "{man}");
}

/// scripts/setup.sh fetches the prebuilt library of one DuckDB release; the
/// locked crate must bind that same release (1.MMmmpp.x is M.m.p), or the
/// build would link a library the bindings do not match.
#[test]
fn the_prebuilt_duckdb_is_the_release_the_locked_crate_binds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"libduckdb-sys\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let encoded: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
    let locked = format!(
        "{}.{}.{}",
        encoded / 10_000,
        (encoded / 100) % 100,
        encoded % 100
    );
    assert_eq!(locked, infra::backend::local::duckdb::DUCKDB_RELEASE);
    let setup = std::fs::read_to_string(root.join("scripts/setup.sh")).unwrap();
    assert!(
        setup.contains(&format!("duckdb_release={locked}\n")),
        "scripts/setup.sh does not fetch DuckDB {locked}"
    );
}
