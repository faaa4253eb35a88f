//! The agent binary's command line: help, and clear errors for bad configs.

use std::process::Command;

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rpibroker-agent"))
        .args(args)
        .env_remove("RPIBROKER_AGENT_CONFIG")
        .output()
        .expect("run rpibroker-agent")
}

#[test]
fn help_explains_the_config_file() {
    let out = agent(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--config"), "{text}");
    assert!(text.contains("rpibroker device add"), "{text}");
}

#[test]
fn missing_config_is_a_clear_error() {
    let out = agent(&["--config", "/nonexistent/device.json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reading agent config /nonexistent/device.json"),
        "{err}"
    );
}

#[test]
fn config_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"broker_url":"http://x","device":"pi","token":"t","tokn":"y"}"#,
            "unknown field `tokn`",
        ),
        (
            r#"{"broker_url":"ftp://x","device":"pi","token":"t"}"#,
            "must start with http:// or https://",
        ),
        (
            r#"{"broker_url":"http://x","device":"Pi","token":"t"}"#,
            "device names are lowercase",
        ),
        (
            r#"{"broker_url":"http://x","device":"pi","token":"t","targets":{"http":"8080"}}"#,
            "targets.http \"8080\"",
        ),
    ];
    for (i, (config, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.json"));
        std::fs::write(&path, config).unwrap();
        let out = agent(&["--config", path.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
}
