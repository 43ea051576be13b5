//! Secrets and exposure on the local target (issue 13): the database
//! password never appears in anything `infra` prints or leaves readable,
//! and the server listens only where it should, with password auth.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sqlx::{Connection, PgConnection};

use crate::harness::{Env, Run};

/// Every file under `dir` that other users can read.
fn world_readable(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            world_readable(&path, out);
        } else if meta.is_file() && meta.permissions().mode() & 0o004 != 0 {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn the_password_never_leaks_and_the_server_is_private() {
    let env = Env::new();
    let data = env.path().join("data").display().to_string();
    env.infra(&["sample", "--out", &data, "--scale", "0.005"])
        .ok();
    let mut outputs: Vec<(String, Run)> = Vec::new();
    let mut run = |args: &[&str]| {
        let out = env.infra(args).ok();
        outputs.push((args.join(" "), out));
    };
    for verbosity in [&[][..], &["-v"], &["-vv"]] {
        run(&[verbosity, &["up"]].concat());
    }
    run(&["-vv", "run", "--data", &data]);
    run(&["run", "--only", "0"]);
    run(&["-v", "run", "--only", "0"]);
    run(&["-v", "run", "--only", "4"]);
    for verbosity in [&[][..], &["-v"], &["-vv"]] {
        run(&[verbosity, &["status"]].concat());
        run(&[verbosity, &["plan"]].concat());
    }
    let traced = env
        .command(&["run", "--only", "0"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(traced.status.success());

    let password_file = env.state().join("postgres.password");
    let mode = std::fs::metadata(&password_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the password file must be private");
    let password = std::fs::read_to_string(&password_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(password.len() >= 32);

    for (args, out) in &outputs {
        assert!(
            !out.stdout.contains(&password),
            "`infra {args}` printed the password"
        );
        assert!(
            !out.stderr.contains(&password),
            "`infra {args}` logged the password"
        );
    }
    for stream in [&traced.stdout, &traced.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(&password),
            "RUST_LOG=trace leaked it"
        );
    }
    let mut files = Vec::new();
    world_readable(&env.state(), &mut files);
    assert!(files.len() > 10, "the scan found too little: {files:?}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let found = bytes
            .windows(password.len())
            .any(|w| w == password.as_bytes());
        assert!(
            !found,
            "{} holds the password and is world-readable",
            file.display()
        );
    }

    // The socket directory is the server user's alone.
    let socket_dir = env.state().join("postgres");
    let mode = std::fs::metadata(&socket_dir).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o077,
        0,
        "{} is mode {:o}",
        socket_dir.display(),
        mode & 0o777
    );

    // TCP on 127.0.0.1 only, and every connection needs the password.
    let mut conn = PgConnection::connect_with(&env.db().await).await.unwrap();
    let listen: String = sqlx::query_scalar("SHOW listen_addresses")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(listen, "127.0.0.1");
    let methods: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT auth_method FROM pg_hba_file_rules")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(methods, ["scram-sha-256"], "pg_hba.conf allows {methods:?}");
    let wrong = env.db().await.password("not-the-password");
    assert!(PgConnection::connect_with(&wrong).await.is_err());
    conn.close().await.unwrap();

    let down = env.infra(&["-vv", "down", "--yes"]).ok();
    assert!(!down.stderr.contains(&password) && !down.stdout.contains(&password));
}
