//! `rpibroker admin create`: the first administrator, made from the command
//! line with the password policy applied.

use std::io::Write;
use std::process::{Command, Stdio};

fn admin_create(data_dir: &std::path::Path, email: &str, password: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rpibroker"))
        .args(["admin", "create", email, "--password-stdin"])
        .env("RPIBROKER_DATA_DIR", data_dir)
        .env_remove("RPIBROKER_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rpibroker");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn admin_create_applies_the_policy_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let weak = admin_create(&data, "root@example.org", "password1");
    assert!(!weak.status.success());
    let err = String::from_utf8_lossy(&weak.stderr);
    assert!(err.contains("among the first that attackers try"), "{err}");
    assert!(err.contains("nothing was created"), "{err}");

    let short = admin_create(&data, "root@example.org", "x7!");
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 8"));

    let bad = admin_create(&data, "root", "vq7-Lmz2-pk9w");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a usable email address"));

    let ok = admin_create(&data, "Root@Example.org", "vq7-Lmz2-pk9w");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("Administrator root@example.org created"),
        "{out}"
    );

    let again = admin_create(&data, "root@example.org", "other-Pass-8812");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // The password is stored as an Argon2id hash, never as given.
    let mut bytes = Vec::new();
    for file in ["broker.sqlite", "broker.sqlite-wal"] {
        bytes.extend(std::fs::read(data.join(file)).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("$argon2id$v=19$"),
        "the hash is in the database"
    );
    assert!(!text.contains("vq7-Lmz2-pk9w"));
}
