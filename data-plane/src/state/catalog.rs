//! The tool and prompt catalogue: per-server raw definitions and the aggregate view.
//!
//! Built on every server change (rare) so that the request path only does map lookups
//! and copies precomputed bytes: the full aggregate `tools`/`prompts` arrays are kept
//! ready, and each scope caches its filtered arrays per catalogue generation.

use bytes::Bytes;
use canopy_core::qualify;
use canopy_mcp::upstream::Upstream;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::Arc;

use super::convert::ServerDef;
use super::scope::{Scope, ScopedLists};
use crate::json::{self, RawObject};
use crate::metrics::UpstreamMetrics;

/// One tool or prompt definition.
pub struct Def {
    /// The upstream's own name.
    pub name: Box<str>,
    /// `server__name` (shortened deterministically if too long).
    pub qualified: Box<str>,
    /// The upstream's definition, byte for byte.
    pub raw: Box<RawValue>,
    /// The same definition with only `name` replaced by `qualified`.
    pub prefixed: Box<str>,
}

impl Def {
    /// Does `scope` allow this definition of `server`? An allow entry may name the
    /// upstream name or, for shortened names, the part of the qualified name after `__`.
    pub fn allowed(&self, server: &str, scope: &Scope) -> bool {
        scope
            .allow()
            .allows_listed_tool(server, &self.name, &self.qualified)
    }
}

/// A registered upstream with its catalogue.
pub struct Server {
    pub name: Arc<str>,
    pub upstream: Upstream,
    pub metrics: Arc<UpstreamMetrics>,
    pub protocol_version: String,
    pub tools: Vec<Def>,
    pub prompts: Vec<Def>,
    tool_index: HashMap<Box<str>, usize>,
    prompt_index: HashMap<Box<str>, usize>,
    /// Unprefixed arrays, for `/servers/<name>/mcp`.
    tools_json: Bytes,
    prompts_json: Bytes,
    pub(crate) source: canopy_proto::v1::UpstreamState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tool,
    Prompt,
}

fn build_defs(server: &str, raws: Vec<Box<RawValue>>, what: &str) -> Vec<Def> {
    let mut out = Vec::with_capacity(raws.len());
    for raw in raws {
        let text = raw.get();
        let (name, span) = match RawObject::parse(text) {
            Ok(obj) => match obj
                .get("name")
                .and_then(|v| json::as_str(v).map(|n| (n.into_owned(), v)))
            {
                Some((n, v)) => (n, json::span_in(text, v.get())),
                None => {
                    tracing::warn!(server, "skipping a {what} without a string name");
                    continue;
                }
            },
            Err(e) => {
                tracing::warn!(server, error = %e, "skipping a {what} that is not a JSON object");
                continue;
            }
        };
        let qualified = qualify(server, &name);
        let mut prefixed = String::with_capacity(text.len() + server.len() + 2);
        match span {
            Some(r) => {
                prefixed.push_str(&text[..r.start]);
                let mut q = Vec::new();
                json::push_str(&mut q, &qualified);
                prefixed.push_str(&String::from_utf8_lossy(&q));
                prefixed.push_str(&text[r.end..]);
            }
            None => continue,
        }
        out.push(Def {
            name: name.into_boxed_str(),
            qualified: qualified.into_boxed_str(),
            raw,
            prefixed: prefixed.into_boxed_str(),
        });
    }
    out
}

fn array<'a>(items: impl Iterator<Item = &'a str>) -> Bytes {
    let mut out = Vec::new();
    out.push(b'[');
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(s.as_bytes());
    }
    out.push(b']');
    Bytes::from(out)
}

impl Server {
    /// What the audit trail keeps of this server's arguments and results.
    pub fn audit_payload(&self) -> canopy_proto::v1::AuditPayload {
        self.source
            .spec
            .as_ref()
            .and_then(|s| canopy_proto::v1::AuditPayload::try_from(s.audit_payload).ok())
            .unwrap_or_default()
    }

    pub(crate) fn new(def: ServerDef, upstream: Upstream, metrics: Arc<UpstreamMetrics>) -> Self {
        let name: Arc<str> = Arc::from(def.config.name.as_str());
        let tools = build_defs(&name, def.tools, "tool");
        let prompts = build_defs(&name, def.prompts, "prompt");
        let index = |defs: &[Def]| {
            let mut m = HashMap::with_capacity(defs.len());
            for (i, d) in defs.iter().enumerate() {
                m.entry(d.name.clone()).or_insert(i);
            }
            m
        };
        Server {
            tool_index: index(&tools),
            prompt_index: index(&prompts),
            tools_json: array(tools.iter().map(|d| d.raw.get())),
            prompts_json: array(prompts.iter().map(|d| d.raw.get())),
            name,
            upstream,
            metrics,
            protocol_version: def.protocol_version,
            tools,
            prompts,
            source: def.source,
        }
    }

    pub fn defs(&self, kind: Kind) -> &[Def] {
        match kind {
            Kind::Tool => &self.tools,
            Kind::Prompt => &self.prompts,
        }
    }

    /// A definition by its upstream name.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Def> {
        let idx = match kind {
            Kind::Tool => &self.tool_index,
            Kind::Prompt => &self.prompt_index,
        };
        idx.get(name).map(|&i| &self.defs(kind)[i])
    }

    /// The unprefixed array a scope sees on this server's own endpoint.
    pub fn list(&self, kind: Kind, scope: Option<&Scope>) -> Bytes {
        let all = match kind {
            Kind::Tool => &self.tools_json,
            Kind::Prompt => &self.prompts_json,
        };
        match scope {
            Some(s) if !s.allow().allows_server(&self.name) => array(
                self.defs(kind)
                    .iter()
                    .filter(|d| d.allowed(&self.name, s))
                    .map(|d| d.raw.get()),
            ),
            _ => all.clone(),
        }
    }
}

/// Every server and the aggregate catalogue, immutable; replaced as a whole.
pub struct Catalog {
    pub generation: u64,
    servers: Vec<Arc<Server>>,
    server_index: HashMap<Arc<str>, usize>,
    tools: HashMap<Box<str>, (usize, usize)>,
    prompts: HashMap<Box<str>, (usize, usize)>,
    all_tools: Bytes,
    all_prompts: Bytes,
}

impl Catalog {
    /// `servers` in any order; listings come out sorted by server name.
    pub(crate) fn build(generation: u64, mut servers: Vec<Arc<Server>>) -> Self {
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        let mut tools = HashMap::new();
        let mut prompts = HashMap::new();
        for (si, s) in servers.iter().enumerate() {
            for (di, d) in s.tools.iter().enumerate() {
                tools.entry(d.qualified.clone()).or_insert((si, di));
            }
            for (di, d) in s.prompts.iter().enumerate() {
                prompts.entry(d.qualified.clone()).or_insert((si, di));
            }
        }
        let all_tools = array(
            servers
                .iter()
                .flat_map(|s| s.tools.iter().map(|d| &*d.prefixed)),
        );
        let all_prompts = array(
            servers
                .iter()
                .flat_map(|s| s.prompts.iter().map(|d| &*d.prefixed)),
        );
        let server_index = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Catalog {
            generation,
            servers,
            server_index,
            tools,
            prompts,
            all_tools,
            all_prompts,
        }
    }

    pub fn empty() -> Self {
        Self::build(0, Vec::new())
    }

    pub fn servers(&self) -> &[Arc<Server>] {
        &self.servers
    }

    pub fn server(&self, name: &str) -> Option<&Arc<Server>> {
        self.server_index.get(name).map(|&i| &self.servers[i])
    }

    /// A definition by its qualified name, with its server.
    pub fn get(&self, kind: Kind, qualified: &str) -> Option<(&Arc<Server>, &Def)> {
        let idx = match kind {
            Kind::Tool => &self.tools,
            Kind::Prompt => &self.prompts,
        };
        let &(si, di) = idx.get(qualified)?;
        let s = &self.servers[si];
        Some((s, &s.defs(kind)[di]))
    }

    /// The aggregate array a scope sees (`None` = everything, development mode).
    pub fn list(&self, kind: Kind, scope: Option<&Scope>) -> Bytes {
        let scope = match scope {
            Some(s) if !s.allow().allows_all() => s,
            _ => {
                return match kind {
                    Kind::Tool => self.all_tools.clone(),
                    Kind::Prompt => self.all_prompts.clone(),
                }
            }
        };
        let lists = match scope.cached_lists(self.generation) {
            Some(l) => l,
            None => {
                let filter = |kind: Kind| {
                    array(self.servers.iter().flat_map(|s| {
                        s.defs(kind)
                            .iter()
                            .filter(|d| d.allowed(&s.name, scope))
                            .map(|d| &*d.prefixed)
                    }))
                };
                let l = Arc::new(ScopedLists {
                    generation: self.generation,
                    tools: filter(Kind::Tool),
                    prompts: filter(Kind::Prompt),
                });
                scope.store_lists(l.clone());
                l
            }
        };
        match kind {
            Kind::Tool => lists.tools.clone(),
            Kind::Prompt => lists.prompts.clone(),
        }
    }
}
