//! The local Spark runtime: the pyspark venv in the cache dir, and the
//! Spark Connect server that `up` starts and `run` submits to.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::harness::Env;

fn connect_pid(env: &Env) -> i32 {
    let dir = env.state().join("spark/pid");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pid"))
        .unwrap_or_else(|| panic!("no pid file in {}", dir.display()));
    std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    })
}

fn gone(pid: i32) -> bool {
    (0..100).any(|_| {
        let dead = !alive(pid);
        if !dead {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        dead
    })
}

/// The local addresses (hex, as /proc/net/tcp* prints them) listening on `port`.
fn listening_addresses(port: u16) -> Vec<String> {
    let port_hex = format!("{port:04X}");
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (addr, state) = (cols[1], cols[3]);
            if state == "0A" && addr.ends_with(&format!(":{port_hex}")) {
                found.push(addr.rsplit_once(':').unwrap().0.to_owned());
            }
        }
    }
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn up_starts_a_private_spark_connect_server_that_run_restarts_and_down_stops() {
    let env = Env::new();
    env.infra(&["up"]).ok();
    let status = env.infra(&["status"]).ok().stdout;
    let line = status
        .lines()
        .find(|l| l.contains("spark connect"))
        .unwrap_or_else(|| panic!("no spark connect line in\n{status}"));
    assert!(line.contains("running on 127.0.0.1:"), "{line}");
    let port: u16 = std::fs::read_to_string(env.state().join("spark/port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // 127.0.0.1 only, as IPv4 or IPv4-mapped IPv6: never every interface.
    let addresses = listening_addresses(port);
    assert!(!addresses.is_empty(), "nothing listens on port {port}");
    for addr in &addresses {
        assert!(
            addr == "0100007F" || addr == "0000000000000000FFFF00000100007F",
            "the server listens on {addr}, not only on 127.0.0.1"
        );
    }
    assert_eq!(mode(&env.state().join("spark")), 0o700);
    assert_eq!(mode(&env.state().join("spark/token")), 0o600);
    let pid = connect_pid(&env);

    let again = env.infra(&["up"]).ok();
    assert!(
        again.stderr.contains("Spark Connect: reuse the server"),
        "{}",
        again.stderr
    );
    assert_eq!(
        connect_pid(&env),
        pid,
        "the second `up` started another server"
    );

    // A crashed server is started again by `run`, which says so.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(gone(pid));
    let status = env.infra(&["status"]).ok().stdout;
    assert!(status.contains("not running (crashed?"), "{status}");
    let data = env.sample("0.002", None);
    let run = env
        .infra(&["run", "--data", &data.display().to_string()])
        .ok();
    assert!(
        run.stderr
            .contains("the local Spark Connect server is not running (it crashed or was killed"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("succeeded"), "{}", run.stdout);
    let restarted = connect_pid(&env);
    assert_ne!(restarted, pid);

    env.infra(&["down", "--yes", "--purge"]).ok();
    assert!(
        gone(restarted),
        "the Spark Connect server still runs after down"
    );
    assert!(!env.state().exists());
}

/// Regression (issue 9): two `up`s on an empty cache dir raced to build the
/// pyspark venv, and one could delete the other's half-built venv.
#[test]
fn two_ups_on_an_empty_cache_build_the_venv_once() {
    let cache = tempfile::Builder::new()
        .prefix("infra-it-cache-")
        .tempdir()
        .unwrap();
    let cache_dir = cache.path().display().to_string();
    let envs = [
        Env::new().var("INFRA_CACHE_DIR", &cache_dir),
        Env::new().var("INFRA_CACHE_DIR", &cache_dir),
    ];
    let children: Vec<_> = envs
        .iter()
        .map(|env| {
            env.command(&["up"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outputs {
        assert!(
            out.status.success(),
            "an `up` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let building: usize = outputs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains("creating the pyspark venv"))
        .count();
    assert_eq!(building, 1, "the venv was built {building} times");
    let entries: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let venvs: Vec<&String> = entries
        .iter()
        .filter(|n| n.starts_with("pyspark-venv-") && !n.ends_with(".lock"))
        .collect();
    assert_eq!(venvs.len(), 1, "{entries:?}");
    assert!(
        cache.path().join(venvs[0]).join(".infra-ready").is_file(),
        "{entries:?}"
    );
    for env in &envs {
        let status = env.infra(&["status"]).ok().stdout;
        assert!(
            status.contains("spark connect") && status.contains("running on 127.0.0.1:"),
            "{status}"
        );
    }
}
