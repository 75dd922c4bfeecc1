//! gRPC over TLS: a control plane started with `--tls-cert/--tls-key`, the CLI with
//! `https://` registries and `--ca-file` (saved in its config), data planes with
//! `--control-plane-ca-file`, `canopy start` with TLS, and the clear errors when trust or
//! scheme is wrong. Certificates (a CA and a server certificate for 127.0.0.1/localhost)
//! are generated at test time with rcgen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use canopy_e2e::{
    bin_path, files_containing, free_port, http_get, wait_for_port, ChildProcess, Cli,
    ControlPlane, ControlPlaneOptions, DataPlane, FixtureServer, StartOutcome, StaticHttpServer,
    START_DEADLINE,
};
use serde_json::json;

use crate::common::access_token;
use crate::dataplane_support::{eventually, post_legacy, wait_for_tool, SYNC_DEADLINE};

/// PEM files of a private CA and a server certificate it signed.
struct Pki {
    dir: tempfile::TempDir,
    /// The server's private key PEM (to check it never shows up in output).
    key_pem: String,
}

impl Pki {
    /// A CA, and a server certificate for `names` signed by it.
    fn new(names: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("canopy-tls-")
            .tempdir()
            .expect("temp dir");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "canopy test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let key = rcgen::KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "canopy control plane");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");

        let key_pem = key.serialize_pem();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca.pem");
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("write cert.pem");
        std::fs::write(dir.path().join("key.pem"), &key_pem).expect("write key.pem");
        Self { dir, key_pem }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> String {
        self.path("ca.pem").display().to_string()
    }

    fn tls_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path("cert.pem").display().to_string(),
            "--tls-key".into(),
            self.path("key.pem").display().to_string(),
        ]
    }

    /// One line of the key's base64 body: what a leak would contain.
    fn key_body_line(&self) -> &str {
        self.key_pem
            .lines()
            .nth(1)
            .expect("a PEM key has a body line")
    }
}

fn tls_control_plane(pki: &Pki) -> ControlPlane {
    ControlPlane::start(ControlPlaneOptions {
        enterprise: true,
        extra_args: pki.tls_args(),
        ..Default::default()
    })
}

#[test]
fn cli_and_data_planes_over_tls() {
    let pki = Pki::new(&["127.0.0.1", "localhost"]);
    let cp = tls_control_plane(&pki);
    let registry = cp.url();
    assert!(registry.starts_with("https://"), "{registry}");
    let admin = Cli::new(&cp);

    // No CA file: the test CA is in no trust store, so the handshake fails, clearly.
    let out = admin.fail(&["--registry", &registry, "init-server"]);
    out.assert_one_line_error();
    out.assert_stderr_mentions("certificate not trusted");
    out.assert_stderr_mentions("--ca-file");

    // A CA file that does not exist / is not a certificate: named in the error.
    let missing = pki.path("missing-ca.pem").display().to_string();
    let out = admin.fail(&["--ca-file", &missing, "init-server"]);
    out.assert_one_line_error();
    out.assert_stderr_mentions("cannot read CA file");
    out.assert_stderr_mentions("missing-ca.pem");
    let key_as_ca = pki.path("key.pem").display().to_string();
    let out = admin.fail(&["--ca-file", &key_as_ca, "init-server"]);
    out.assert_one_line_error();
    out.assert_stderr_mentions("holds no PEM certificate");
    assert!(
        !out.stderr.contains(pki.key_body_line()),
        "key material in: {}",
        out.stderr
    );

    // Plaintext gRPC to the TLS port fails with a hint instead of hanging or panicking.
    let plain = format!("http://{}", cp.addr());
    let out = admin.fail(&["--registry", &plain, "init-server"]);
    out.assert_one_line_error();
    out.assert_stderr_mentions("https://");

    // With the CA: init-server works and saves the CA file next to the registry...
    let init = admin.json(&[
        "--registry",
        &registry,
        "--ca-file",
        &pki.ca(),
        "init-server",
    ]);
    assert_eq!(init["user"], "admin", "{init}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(admin.config_path()).expect("config file"))
            .expect("config JSON");
    assert_eq!(saved["registry"], registry.as_str(), "{saved}");
    assert_eq!(saved["ca_file"], pki.ca().as_str(), "{saved}");

    // ...so later commands work without repeating it (registry from the config file too).
    let mut later = admin.command();
    later
        .env_remove("CANOPY_REGISTRY")
        .args(["-o", "json", "whoami"]);
    let out = later.output().expect("run canopy whoami");
    assert!(
        out.status.success(),
        "whoami from the saved config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).expect("whoami JSON");
    assert_eq!(me["name"], "admin", "{me}");

    let upstream = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &upstream.url()]);
    let created = admin.json(&["create", "mcp-client", "agent", "--allow", "rmcp"]);
    let token = access_token(&created);

    // A data plane trusting the CA syncs over TLS and serves /mcp.
    let dp = DataPlane::start_with(&cp, &["--control-plane-ca-file", &pki.ca()]);
    assert!(
        dp.wait_ready(SYNC_DEADLINE),
        "data plane with the CA never became ready; logs:\n{}",
        dp.logs()
    );
    wait_for_tool(&dp.mcp_url(), Some(&token), "rmcp__echo");
    let r = post_legacy(
        &dp.mcp_url(),
        Some(&token),
        2,
        "tools/call",
        json!({"name": "rmcp__echo", "arguments": {"message": "over tls"}}),
    );
    assert_eq!(r.status, 200, "{r}");
    assert!(r.text.contains("over tls"), "{r}");
    let planes = admin.json(&["list", "data-planes"]);
    assert_eq!(
        planes.as_array().map(Vec::len),
        Some(1),
        "one data plane connected: {planes}"
    );

    // A data plane without the CA never gets a snapshot, and says why in its log.
    let untrusting = DataPlane::start(&cp);
    eventually(
        "the untrusting data plane logs the TLS error",
        SYNC_DEADLINE,
        || {
            let logs = untrusting.logs();
            logs.contains("certificate not trusted").then_some(logs)
        },
    );
    let logs = untrusting.logs();
    assert!(logs.contains("--control-plane-ca-file"), "{logs}");
    assert!(
        matches!(untrusting.get("/readyz"), Some((503, _))),
        "a data plane that cannot verify the control plane must not be ready"
    );

    // Nothing logged or saved anywhere holds the server's private key.
    for dir in [cp.root(), dp.root(), untrusting.root(), admin.home()] {
        let hits = files_containing(dir, pki.key_body_line());
        assert!(hits.is_empty(), "private key material in {hits:?}");
    }
}

#[test]
fn control_plane_refuses_bad_tls_files_clearly() {
    let pki = Pki::new(&["127.0.0.1"]);
    let other = Pki::new(&["127.0.0.1"]);
    let mut cp = ControlPlane::start_enterprise();
    let refused = |cp: &mut ControlPlane, extra_args: Vec<String>| -> String {
        match cp.try_start_with(ControlPlaneOptions {
            enterprise: true,
            extra_args,
            ..Default::default()
        }) {
            StartOutcome::Exited { status, output } => {
                assert!(!status.success(), "exit status {status}: {output}");
                assert!(!output.contains("panicked"), "{output}");
                output
            }
            StartOutcome::Listening { output } => panic!("started anyway:\n{output}"),
        }
    };
    let cert = pki.path("cert.pem").display().to_string();
    let key = pki.path("key.pem").display().to_string();

    // A key that belongs to another certificate.
    let out = refused(
        &mut cp,
        vec![
            "--tls-cert".into(),
            cert.clone(),
            "--tls-key".into(),
            other.path("key.pem").display().to_string(),
        ],
    );
    assert!(out.contains("does not belong to the certificate"), "{out}");
    assert!(
        !out.contains(other.key_body_line()),
        "key material in: {out}"
    );

    // A missing file is named.
    let out = refused(
        &mut cp,
        vec![
            "--tls-cert".into(),
            pki.path("nope.pem").display().to_string(),
            "--tls-key".into(),
            key.clone(),
        ],
    );
    assert!(out.contains("cannot read TLS certificate file"), "{out}");
    assert!(out.contains("nope.pem"), "{out}");

    // Certificate and key swapped.
    let out = refused(
        &mut cp,
        vec![
            "--tls-cert".into(),
            key.clone(),
            "--tls-key".into(),
            cert.clone(),
        ],
    );
    assert!(out.contains("holds no PEM certificate"), "{out}");
    assert!(!out.contains(pki.key_body_line()), "key material in: {out}");

    // Only one of the two flags.
    let out = refused(&mut cp, vec!["--tls-cert".into(), cert]);
    assert!(out.contains("--tls-key"), "{out}");
}

/// `canopy start --tls-cert/--tls-key`: the in-process data plane trusts its own control
/// plane's certificate, and the CLI reaches it with that certificate's CA.
#[test]
fn canopy_start_with_tls() {
    let pki = Pki::new(&["127.0.0.1", "localhost"]);
    // The in-process data plane trusts the certificate file itself: with a CA-signed
    // certificate the file carries the CA after the server certificate (a full chain).
    let chain = pki.path("chain.pem");
    std::fs::write(
        &chain,
        std::fs::read_to_string(pki.path("cert.pem")).expect("cert")
            + &std::fs::read_to_string(pki.path("ca.pem")).expect("ca"),
    )
    .expect("write chain.pem");

    let root = tempfile::Builder::new()
        .prefix("canopy-start-tls-")
        .tempdir()
        .expect("temp dir");
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = root.path().join("start.log");
    let mut cmd = Command::new(bin_path("canopy"));
    cmd.args(["start", "--enterprise", "--data-dir"])
        .arg(root.path().join("data"))
        .args(["--grpc-listen", &grpc.to_string()])
        .args(["--http-listen", &http.to_string()])
        .arg("--tls-cert")
        .arg(&chain)
        .arg("--tls-key")
        .arg(pki.path("key.pem"))
        .args(["--refresh-interval", "0", "--changelog-max-age", "1d"]);
    clear_canopy_env(&mut cmd);
    cmd.env("HOME", root.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(root.path().join("start.out")).expect("log file"))
        .stderr(std::fs::File::create(&log).expect("log file"));
    let mut process = ChildProcess::spawn("canopy start --tls-cert", cmd);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_for_port(grpc, START_DEADLINE, || process.is_running()),
        "canopy start never listened on {grpc}; logs:\n{}",
        logs()
    );
    eventually(
        "canopy start /readyz 200 over TLS sync",
        SYNC_DEADLINE,
        || matches!(http_get(http, "/readyz"), Some((200, _))).then_some(()),
    );
    // "started" (with the registry) follows readiness: it is said once both planes serve.
    eventually(
        "the started line names the https registry",
        SYNC_DEADLINE,
        || logs().contains(&format!("https://{grpc}")).then_some(()),
    );

    let admin = Cli::with_registry(&format!("https://{grpc}"));
    let init = admin.json(&["--ca-file", &pki.ca(), "init-server"]);
    assert_eq!(init["user"], "admin", "{init}");
    assert_eq!(admin.json(&["whoami"])["role"], "admin");
    assert!(files_containing(root.path(), pki.key_body_line()).is_empty());
}

/// A `canopy start` whose certificate its own data plane could not verify refuses to start.
#[test]
fn canopy_start_refuses_a_certificate_for_another_host() {
    let pki = Pki::new(&["cp.example.com"]);
    let root = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(bin_path("canopy"));
    clear_canopy_env(&mut cmd);
    let out = cmd
        .args(["start", "--data-dir"])
        .arg(root.path().join("data"))
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(pki.path("cert.pem"))
        .arg("--tls-key")
        .arg(pki.path("key.pem"))
        .env("HOME", root.path())
        .stdin(Stdio::null())
        .output()
        .expect("run canopy start");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cert.pem"), "{stderr}");
    assert!(stderr.contains("localhost"), "{stderr}");
    assert!(!stderr.contains(pki.key_body_line()), "{stderr}");
    // Refused before anything was created.
    assert!(!Path::new(&root.path().join("data")).exists());
}

fn clear_canopy_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("CANOPY_") {
            cmd.env_remove(k);
        }
    }
}

/// An identity provider behind one private CA, registered through a control plane behind
/// another: after `create|update identity-provider`, `--ca-file` is the issuer's CA, and
/// the registry's comes from `--ca-file` before the subcommand, CANOPY_CA_FILE or the
/// config file.
#[test]
fn identity_provider_behind_a_private_ca() {
    const JWKS: &str =
        r#"{"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"sXch","e":"AQAB"}]}"#;
    let cp_pki = Pki::new(&["127.0.0.1", "localhost"]);
    let idp_pki = Pki::new(&["127.0.0.1"]);
    let cp = tls_control_plane(&cp_pki);
    let admin = Cli::new(&cp);
    // The registry's CA is saved in the config file with the registry.
    admin.json(&["--ca-file", &cp_pki.ca(), "init-server"]);
    let idp = StaticHttpServer::start_tls(&idp_pki.path("cert.pem"), &idp_pki.path("key.pem"));
    idp.serve_provider(JWKS);
    assert!(idp.url().starts_with("https://127.0.0.1:"), "{}", idp.url());
    let private_ca = |admin: &Cli| {
        let list = admin.json(&["list", "identity-providers"]);
        list.as_array()
            .and_then(|a| a.first())
            .map(|p| p["private_ca"].clone())
            .unwrap_or_default()
    };

    // Without the issuer's CA its certificate is not trusted: an error, nothing stored.
    let out = admin.fail(&[
        "create",
        "identity-provider",
        "corp",
        "--issuer",
        &idp.url(),
    ]);
    out.assert_one_line_error();
    assert!(out.text_lower().contains("cannot reach"), "{out:?}");
    assert_eq!(admin.json(&["list", "identity-providers"]), json!([]));
    // The registry's CA after the subcommand is taken as the issuer's, and does not fit.
    admin
        .fail(&[
            "create",
            "identity-provider",
            "corp",
            "--issuer",
            &idp.url(),
            "--ca-file",
            &cp_pki.ca(),
        ])
        .assert_one_line_error();
    assert_eq!(admin.json(&["list", "identity-providers"]), json!([]));

    // The issuer's CA after the subcommand; the registry's from the config file.
    let created = admin.json(&[
        "create",
        "identity-provider",
        "corp",
        "--issuer",
        &idp.url(),
        "--ca-file",
        &idp_pki.ca(),
    ]);
    assert_eq!(created["private_ca"], true, "{created}");
    assert_eq!(created["key_ids"], json!(["k1"]), "{created}");

    // Both on one line: the registry's before the subcommand, the issuer's after.
    admin.json(&[
        "--ca-file",
        &cp_pki.ca(),
        "update",
        "identity-provider",
        "corp",
        "--ca-file",
        &idp_pki.ca(),
        "--leeway",
        "30s",
    ]);
    // The registry's from CANOPY_CA_FILE; the old spelling for the issuer's.
    admin.json_with_env(
        &[
            "update",
            "identity-provider",
            "corp",
            "--issuer-ca-file",
            &idp_pki.ca(),
        ],
        &[("CANOPY_CA_FILE", &cp_pki.ca())],
    );
    // An update naming the wrong issuer CA refetches, fails and changes nothing.
    admin
        .fail(&[
            "--ca-file",
            &cp_pki.ca(),
            "update",
            "identity-provider",
            "corp",
            "--ca-file",
            &cp_pki.ca(),
        ])
        .assert_one_line_error();
    assert_eq!(private_ca(&admin), true);
    let p = &admin.json(&["list", "identity-providers"])[0];
    assert_eq!(p["leeway_ms"], 30_000, "{p}");
}
