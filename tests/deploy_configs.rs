//! The configurations the deployment files ship are valid for the binary:
//! `statuswatch check` accepts them with the environment the Kubernetes
//! Component sets, so a rendered manifest never carries a config that would
//! stop the sidecar at start-up.

mod common;

use std::process::Command;

use common::*;

/// The container environment of `deploy/kubernetes/sidecar/deployment-patch.yaml`
/// (the bearer token comes from a Secret there).
const COMPONENT_ENV: [(&str, &str); 4] = [
    ("STATUSWATCH__PROXY__LISTEN", "0.0.0.0:9080"),
    ("STATUSWATCH__PROXY__UPSTREAM", "127.0.0.1:8080"),
    ("STATUSWATCH__ADMIN__BEARER_TOKEN", "test-token"),
    ("STATUSWATCH__LOG__FORMAT", "json"),
];

fn check(rel: &str) -> String {
    let path = format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(bin())
        .args(["check", "--config", &path])
        .envs(COMPONENT_ENV)
        .output()
        .expect("run statuswatch check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{rel} is rejected:\n{text}");
    text
}

#[test]
fn component_config_is_valid() {
    let text = check("deploy/kubernetes/sidecar/statuswatch.toml");
    assert!(
        text.contains("proxy 0.0.0.0:9080 -> 127.0.0.1:8080"),
        "the container env sets the proxy's addresses:\n{text}"
    );
    assert!(
        text.contains("admin 0.0.0.0:9464"),
        "admin listens on the pod IP:\n{text}"
    );
}

#[test]
fn stranger_fixture_config_is_valid() {
    // the test fixture's own catalog and response-header tenant source
    let text = check("deploy/kubernetes/testdata/stranger/statuswatch.toml");
    assert!(text.contains("admin 0.0.0.0:9464"), "{text}");
}
