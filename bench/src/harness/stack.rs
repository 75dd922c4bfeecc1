//! Starting the programs under test on core 0: control plane, data planes, the bench
//! upstream, the bare baseline and the bare forwarding proxy.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::admin::Admin;
use crate::fixture;
use crate::procs::{free_port, Pinning, Proc};
use canopy_proto::v1 as pb;

/// Where the binaries are and how to place them.
pub struct Env {
    pub bins: PathBuf,
    pub pin: Pinning,
    pub logs: PathBuf,
    pub http: reqwest::Client,
    /// Token every data plane authenticates to control planes with.
    pub dp_token: String,
}

impl Env {
    pub fn bin(&self, name: &str) -> anyhow::Result<PathBuf> {
        let p = self.bins.join(name);
        if !p.is_file() {
            bail!("binary {} missing: build the workspace first", p.display());
        }
        Ok(p)
    }

    fn server_cmd(&self, bin: &str) -> anyhow::Result<std::process::Command> {
        let mut cmd = self.pin.command(0, &self.bin(bin)?);
        cmd.env_remove("RUST_LOG")
            .env("CANOPY_DATA_PLANE_TOKEN", &self.dp_token);
        Ok(cmd)
    }

    /// Control plane on core 0 over an existing (enterprise) data dir.
    pub async fn control_plane(&self, name: &str, data_dir: &Path) -> anyhow::Result<ControlPlane> {
        let port = free_port()?;
        let mut cmd = self.server_cmd("canopy-control-plane")?;
        cmd.arg("--data-dir").arg(data_dir).args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--enterprise",
        ]);
        let mut proc = Proc::spawn(name, cmd, &self.logs)?;
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let admin = loop {
            proc.check_alive()?;
            if let Ok(a) = Admin::connect(&url, fixture::ADMIN_TOKEN).await {
                if a.client()
                    .who_am_i(a.req(pb::WhoAmIRequest {}))
                    .await
                    .is_ok()
                {
                    break a;
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("control plane {name} not answering after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(ControlPlane { proc, url, admin })
    }

    /// Bench upstream on core 0.
    pub async fn upstream(&self) -> anyhow::Result<(Proc, String)> {
        let port = free_port()?;
        let mut cmd = self.pin.command(0, &self.bin("canopy-bench-upstream")?);
        cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
        let proc = Proc::spawn("upstream", cmd, &self.logs)?;
        let url = format!("http://127.0.0.1:{port}/mcp");
        self.wait_post(&url).await?;
        Ok((proc, url))
    }

    /// Bare baseline on core 0, answering `body_file`'s bytes.
    pub async fn bare(&self, body_file: &Path) -> anyhow::Result<(Proc, String)> {
        let port = free_port()?;
        let mut cmd = self.pin.command(0, &self.bin("canopy-bench-bare")?);
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--body-file")
            .arg(body_file);
        let proc = Proc::spawn("bare", cmd, &self.logs)?;
        let url = format!("http://127.0.0.1:{port}/mcp");
        self.wait_post(&url).await?;
        Ok((proc, url))
    }

    /// The bare forwarding proxy (`canopy-bench-bare --forward`) on core 0, in front of
    /// `upstream_url`: the floor of one HTTP hop.
    pub async fn forward_proxy(&self, upstream_url: &str) -> anyhow::Result<(Proc, String)> {
        let port = free_port()?;
        let mut cmd = self.pin.command(0, &self.bin("canopy-bench-bare")?);
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--forward", upstream_url]);
        let proc = Proc::spawn("forward-proxy", cmd, &self.logs)?;
        let url = format!("http://127.0.0.1:{port}/mcp");
        self.wait_post(&url).await?;
        Ok((proc, url))
    }

    async fn wait_post(&self, url: &str) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(fixture::request_body("ping", None))
                .send()
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("{url} not answering")
    }

    /// Starts a data plane (core 0) and returns once `/readyz` is 200, with the time
    /// from spawn to ready (the cold sync time).
    pub async fn data_plane(&self, name: &str, cp: &ControlPlane) -> anyhow::Result<DataPlane> {
        let port = free_port()?;
        let mut cmd = self.server_cmd("canopy-data-plane")?;
        cmd.args(["--control-plane", &cp.url])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--node-id", name]);
        let start = Instant::now();
        let mut proc = Proc::spawn(name, cmd, &self.logs)?;
        let base = format!("http://127.0.0.1:{port}");
        let ready = format!("{base}/readyz");
        loop {
            if let Ok(r) = self.http.get(&ready).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            proc.check_alive()?;
            if start.elapsed() > Duration::from_secs(120) {
                bail!("data plane {name} not ready after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(DataPlane {
            cold_sync: start.elapsed(),
            proc,
            base,
        })
    }
}

pub struct ControlPlane {
    pub proc: Proc,
    pub url: String,
    pub admin: Admin,
}

impl ControlPlane {
    /// Registers the bench upstream as server `bench` (discovers its 50 tools).
    pub async fn register_upstream(&self, upstream_url: &str) -> anyhow::Result<()> {
        self.admin
            .client()
            .register_server(self.admin.req(pb::RegisterServerRequest {
                spec: Some(pb::ServerSpec {
                    name: fixture::SERVER.into(),
                    transport: pb::Transport::StreamableHttp as i32,
                    url: upstream_url.into(),
                    ..Default::default()
                }),
                force: true,
            }))
            .await
            .context("registering the bench upstream")?;
        Ok(())
    }
}

pub struct DataPlane {
    pub proc: Proc,
    pub base: String,
    pub cold_sync: Duration,
}

impl DataPlane {
    pub fn mcp(&self) -> String {
        format!("{}/mcp", self.base)
    }
}

/// Headers of every bench request (client 0's token; the baselines ignore it).
pub fn headers(token: &str) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/json".into()),
        (
            "Accept".into(),
            "application/json, text/event-stream".into(),
        ),
        ("MCP-Protocol-Version".into(), "2025-06-18".into()),
        ("Authorization".into(), format!("Bearer {token}")),
    ]
}

/// One POST; returns status and body.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: &str,
) -> anyhow::Result<(u16, bytes::Bytes)> {
    let mut req = http.post(url).body(body.to_owned());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.bytes().await?))
}
