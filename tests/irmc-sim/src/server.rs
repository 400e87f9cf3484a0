//! Listeners, connections and HTTP routing for the simulated iRMCs.
//!
//! One accept task per listener (per node and scheme); each accepted connection gets a
//! task running hyper's HTTP/1.1 server (keep-alive, as iRMC clients reuse
//! connections). Every task watches the shutdown channel, so [`Sim::shutdown`] ends all
//! of them, including connections held open by a `hang` fault.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::auth::{self, Verdict};
use crate::fault::{ErrorKind, FaultSet, FaultSpec, Malformed};
use crate::node::{
    BootEnabled, BootMode, BootTarget, NodeContext, NodeHandle, NodeInner, NodeState,
    RequestCounters,
};
use crate::report::{self, Model};
use crate::scci::{self, ExecEnv, ScciFailure};
use crate::tls::TlsMaterial;
use crate::{Auth, Secret, ShareMap, SimBuilder, SimError, node_address};

/// Largest request body accepted (SCCI documents are a few KB).
const MAX_BODY: usize = 1 << 20;

/// Where one simulated iRMC listens.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NodeAddr {
    pub index: usize,
    pub ip: Ipv4Addr,
    pub https: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// IPMI over LAN (UDP), unless turned off.
    pub ipmi: Option<SocketAddr>,
}

fn url(scheme: &str, default_port: u16, addr: SocketAddr) -> String {
    if addr.port() == default_port {
        format!("{scheme}://{}", addr.ip())
    } else {
        format!("{scheme}://{addr}")
    }
}

impl NodeAddr {
    /// `https://IP` (port omitted when 443).
    pub fn https_url(&self) -> Option<String> {
        self.https.map(|a| url("https", 443, a))
    }
    /// `http://IP` (port omitted when 80).
    pub fn http_url(&self) -> Option<String> {
        self.http.map(|a| url("http", 80, a))
    }
    /// HTTPS URL if served, else HTTP.
    pub fn url(&self) -> String {
        self.https_url()
            .or_else(|| self.http_url())
            .unwrap_or_default()
    }
}

/// State shared by all listeners of one simulator.
pub(crate) struct Shared {
    pub nodes: Vec<NodeHandle>,
    pub addrs: Vec<NodeAddr>,
    pub username: String,
    pub password: Secret,
    pub auth: Auth,
    pub model: Model,
    pub firmware: String,
    pub env: ExecEnv,
    pub report: Option<Arc<str>>,
    pub seed: u64,
    pub digest_secret: [u8; 16],
    pub tls: Option<TlsMaterial>,
}

impl Shared {
    /// Apply a fault spec to the nodes it selects.
    pub(crate) fn apply_fault(&self, spec: &FaultSpec) {
        for n in &self.nodes {
            if spec.applies_to(n.index()) {
                let mut f = if spec.clear {
                    FaultSet::default()
                } else {
                    n.faults()
                };
                f.merge(&spec.faults);
                n.set_faults(f);
            }
        }
    }
}

/// A running simulator.
pub struct Sim {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    control: Option<SocketAddr>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("nodes", &self.shared.nodes.len())
            .field("control", &self.control)
            .finish()
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn bind(node: usize, ip: Ipv4Addr, port: u16) -> Result<TcpListener, SimError> {
    let addr = SocketAddr::from((ip, port));
    TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { node, addr, source })
}

impl Sim {
    /// Bind every listener and start serving.
    pub async fn start(b: SimBuilder) -> Result<Sim, SimError> {
        if b.count == 0 {
            return Err(SimError::Config("node count must be at least 1".into()));
        }
        if b.https_port.is_none() && b.http_port.is_none() {
            return Err(SimError::Config("neither HTTPS nor HTTP port given".into()));
        }
        if let Some(c) = b.control
            && !c.ip().is_loopback()
        {
            return Err(SimError::Config(format!(
                "control address {c} is not loopback"
            )));
        }
        // A served report that names its iRMC decides model and firmware unless the
        // firmware was given explicitly, so the FD rule matches what clients read.
        let (model, firmware) = match (&b.report, &b.firmware) {
            (Some(doc), None) => {
                report::identify(doc).unwrap_or((b.model, b.firmware_or_default().to_string()))
            }
            _ => (b.model, b.firmware_or_default().to_string()),
        };
        let env = ExecEnv {
            model,
            has_virtual_fd: report::has_virtual_fd(model, &firmware),
            busy: b.busy,
            licensed: b.licensed,
            redfish: b.redfish,
        };
        let tls = match b.https_port {
            Some(_) => Some(TlsMaterial::generate()?),
            None => None,
        };
        let ctx = Arc::new(NodeContext {
            hook: b.hook.clone(),
            shares: ShareMap::new(b.shares.clone()),
        });
        let mut restored: std::collections::HashMap<usize, NodeState> =
            b.restore.iter().cloned().collect();
        let mut nodes = Vec::with_capacity(b.count);
        let mut listeners = Vec::with_capacity(b.count);
        let mut addrs = Vec::with_capacity(b.count);
        for i in 0..b.count {
            let ip = node_address(b.base, i)?;
            let state = match restored.remove(&i) {
                Some(saved) => NodeState {
                    counters: RequestCounters::default(),
                    ramdisk_running: false,
                    ..saved
                },
                None => NodeState {
                    remote_media_enabled: true,
                    cd: crate::MediaSettings {
                        drives: 1,
                        ..Default::default()
                    },
                    fd: crate::MediaSettings {
                        drives: 1,
                        ..Default::default()
                    },
                    hd: crate::MediaSettings {
                        drives: 1,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            };
            nodes.push(NodeHandle {
                inner: Arc::new(NodeInner {
                    index: i,
                    address: ip,
                    state: Mutex::new(state),
                    faults: Mutex::new(FaultSet::default()),
                    seq: AtomicU64::new(0),
                }),
                ctx: ctx.clone(),
            });
            let https = match b.https_port {
                Some(p) => Some(bind(i, ip, p).await?),
                None => None,
            };
            let http = match b.http_port {
                Some(p) => Some(bind(i, ip, p).await?),
                None => None,
            };
            let ipmi = match b.ipmi_port {
                Some(p) => Some(crate::ipmi::bind(&nodes[i], p).await.map_err(|source| {
                    SimError::Bind {
                        node: i,
                        addr: SocketAddr::from((ip, p)),
                        source,
                    }
                })?),
                None => None,
            };
            addrs.push(NodeAddr {
                index: i,
                ip,
                https: https.as_ref().and_then(|l| l.local_addr().ok()),
                http: http.as_ref().and_then(|l| l.local_addr().ok()),
                ipmi: ipmi.as_ref().and_then(|s| s.local_addr().ok()),
            });
            listeners.push((https, http, ipmi));
        }
        let mut secret = [0u8; 16];
        rand::fill(&mut secret);
        let shared = Arc::new(Shared {
            nodes,
            addrs,
            username: b.username.clone(),
            password: b.password.clone(),
            auth: b.auth,
            model,
            firmware,
            env,
            report: b.report.clone(),
            seed: b.seed,
            digest_secret: secret,
            tls,
        });
        for spec in &b.faults {
            shared.apply_fault(spec);
        }
        let (tx, rx) = watch::channel(false);
        let mut tasks = Vec::with_capacity(b.count * 2 + 1);
        let creds = crate::ipmi::Credentials {
            user: shared.username.clone(),
            password: shared.password.clone(),
        };
        for (i, (https, http, ipmi)) in listeners.into_iter().enumerate() {
            if let Some(sock) = ipmi {
                tasks.push(tokio::spawn(crate::ipmi::serve(
                    shared.nodes[i].clone(),
                    sock,
                    creds.clone(),
                    shared.seed,
                    rx.clone(),
                )));
            }
            if let Some(l) = https {
                tasks.push(tokio::spawn(accept_loop(
                    shared.clone(),
                    i,
                    l,
                    true,
                    rx.clone(),
                )));
            }
            if let Some(l) = http {
                tasks.push(tokio::spawn(accept_loop(
                    shared.clone(),
                    i,
                    l,
                    false,
                    rx.clone(),
                )));
            }
        }
        let mut control = None;
        if let Some(addr) = b.control {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| SimError::ControlBind { addr, source })?;
            control = l.local_addr().ok();
            tasks.push(tokio::spawn(crate::control::serve(
                shared.clone(),
                l,
                rx.clone(),
            )));
        }
        tracing::info!(nodes = b.count, model = %model, firmware = %shared.firmware, "simulator started");
        Ok(Sim {
            shared,
            shutdown: tx,
            tasks,
            control,
        })
    }

    /// Listening addresses, one per node.
    pub fn addresses(&self) -> &[NodeAddr] {
        &self.shared.addrs
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.shared.nodes.len()
    }

    /// Always false: a simulator has at least one node.
    pub fn is_empty(&self) -> bool {
        self.shared.nodes.is_empty()
    }

    /// Handle of node `i`. Panics when `i >= len()` (a programming error in the caller).
    pub fn node(&self, i: usize) -> &NodeHandle {
        &self.shared.nodes[i]
    }

    /// Handle of node `i`, if it exists.
    pub fn get_node(&self, i: usize) -> Option<&NodeHandle> {
        self.shared.nodes.get(i)
    }

    /// All node handles.
    pub fn nodes(&self) -> &[NodeHandle] {
        &self.shared.nodes
    }

    /// PEM of the CA that signed every node's certificate (empty without HTTPS).
    pub fn ca_pem(&self) -> &str {
        self.shared.tls.as_ref().map_or("", |t| t.ca_pem())
    }

    /// Address of the control API, when started with one.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control
    }

    /// Firmware served.
    pub fn firmware(&self) -> &str {
        &self.shared.firmware
    }

    /// True when the simulated firmware has a virtual floppy.
    pub fn has_virtual_fd(&self) -> bool {
        self.shared.env.has_virtual_fd
    }

    /// Apply a fault spec at run time.
    pub fn apply_fault(&self, spec: &FaultSpec) {
        self.shared.apply_fault(spec);
    }

    /// Counters summed over all nodes.
    pub fn total_counters(&self) -> RequestCounters {
        total_counters(&self.shared.nodes)
    }

    /// Zero every node's counters.
    pub fn reset_counters(&self) {
        for n in &self.shared.nodes {
            n.update(|s| s.counters = RequestCounters::default());
        }
    }

    /// Stop all listeners and connections and wait for their tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

pub(crate) fn total_counters(nodes: &[NodeHandle]) -> RequestCounters {
    let mut t = RequestCounters::default();
    for n in nodes {
        let c = n.update(|s| s.counters.clone());
        for (k, v) in c.scci {
            *t.scci.entry(k).or_default() += v;
        }
        t.config_posts += c.config_posts;
        t.report += c.report;
        t.busy_refused += c.busy_refused;
        t.settings += c.settings;
        t.redfish_get += c.redfish_get;
        t.redfish_patch += c.redfish_patch;
        t.redfish_post += c.redfish_post;
        t.elcm += c.elcm;
        t.unauthorized += c.unauthorized;
        t.not_found += c.not_found;
        for (k, v) in c.ipmi {
            *t.ipmi.entry(k).or_default() += v;
        }
        t.ipmi_packets += c.ipmi_packets;
        t.ipmi_dropped += c.ipmi_dropped;
        t.ipmi_unauthorized += c.ipmi_unauthorized;
        t.total += c.total;
        t.delay_ms = t.delay_ms.saturating_add(c.delay_ms);
    }
    t
}

async fn accept_loop(
    shared: Arc<Shared>,
    idx: usize,
    listener: TcpListener,
    tls: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut acceptor: Option<TlsAcceptor> = None;
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(node = idx, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acc = if tls {
            if acceptor.is_none() {
                let Some(material) = shared.tls.as_ref() else {
                    break;
                };
                match material.acceptor_for(shared.nodes[idx].address()) {
                    Ok(a) => acceptor = Some(a),
                    Err(e) => {
                        tracing::error!(node = idx, error = %e, "no TLS certificate");
                        continue;
                    }
                }
            }
            acceptor.clone()
        } else {
            None
        };
        tokio::spawn(serve_conn(
            shared.clone(),
            idx,
            stream,
            acc,
            shutdown.clone(),
        ));
    }
}

async fn serve_conn(
    shared: Arc<Shared>,
    idx: usize,
    stream: TcpStream,
    acc: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let svc = service_fn(move |req| handle(shared.clone(), idx, req));
    let work = async move {
        let builder = hyper::server::conn::http1::Builder::new();
        match acc {
            Some(a) => match a.accept(stream).await {
                Ok(s) => {
                    let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                }
                Err(e) => tracing::debug!(node = idx, error = %e, "TLS handshake failed"),
            },
            None => {
                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
            }
        }
    };
    tokio::select! {
        _ = work => {}
        _ = shutdown.changed() => {}
    }
}

type Resp = Response<Full<Bytes>>;

fn respond(
    status: StatusCode,
    ctype: &str,
    body: impl Into<Bytes>,
    extra: &[(header::HeaderName, String)],
) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(ctype) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(k.clone(), v);
        }
    }
    r
}

fn xml(body: String) -> Resp {
    respond(StatusCode::OK, "text/xml; charset=UTF-8", body, &[])
}

fn json_resp(status: StatusCode, v: &serde_json::Value) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_default();
    respond(
        status,
        "application/json; charset=utf-8",
        body,
        &[(
            header::HeaderName::from_static("odata-version"),
            "4.0".into(),
        )],
    )
}

fn redfish_error(status: StatusCode, code: &str, msg: &str) -> Resp {
    json_resp(
        status,
        &json!({"error": {"code": code, "message": msg,
            "@Message.ExtendedInfo": [{"MessageId": code, "Message": msg}]}}),
    )
}

fn plain(status: StatusCode, text: &str) -> Resp {
    respond(status, "text/plain; charset=utf-8", text.to_string(), &[])
}

/// Known endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    RedfishRoot,
    Systems,
    System,
    Reset,
    OemVirtualMedia,
    OemVirtualMediaAction,
    ElcmStatus,
    Config,
    Report,
    Settings,
    /// `/redfish/v1/Systems/0/EthernetInterfaces` (`ethernet.rs`).
    EthernetInterfaces,
    /// `/redfish/v1/Systems/0/EthernetInterfaces/{n}`, n counted from 1.
    EthernetInterface(u8),
}

impl Route {
    fn find(path: &str) -> Option<Route> {
        let p = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        if let Some(nic) = crate::ethernet::route(p) {
            return Some(nic);
        }
        Some(match p {
            "/redfish/v1" => Route::RedfishRoot,
            "/redfish/v1/Systems" => Route::Systems,
            "/redfish/v1/Systems/0" => Route::System,
            "/redfish/v1/Systems/0/Actions/ComputerSystem.Reset" => Route::Reset,
            crate::redfish_oem::VM_PATH => Route::OemVirtualMedia,
            crate::redfish_oem::VM_ACTION => Route::OemVirtualMediaAction,
            "/rest/v1/Oem/eLCM/eLCMStatus" => Route::ElcmStatus,
            "/config" => Route::Config,
            "/report.xml" => Route::Report,
            "/iRMC_Settings.pre" => Route::Settings,
            _ => return None,
        })
    }
    fn allowed(self) -> &'static [Method] {
        match self {
            Route::System | Route::OemVirtualMedia => &[Method::GET, Method::PATCH],
            Route::Reset | Route::Config | Route::OemVirtualMediaAction => &[Method::POST],
            _ => &[Method::GET],
        }
    }
    fn is_redfish(self) -> bool {
        matches!(
            self,
            Route::RedfishRoot
                | Route::Systems
                | Route::System
                | Route::Reset
                | Route::EthernetInterfaces
                | Route::EthernetInterface(_)
                | Route::OemVirtualMedia
                | Route::OemVirtualMediaAction
        )
    }
    fn is_xml(self) -> bool {
        matches!(self, Route::Config | Route::Report | Route::Settings)
    }
}

async fn handle(
    shared: Arc<Shared>,
    idx: usize,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let node = shared.nodes[idx].clone();
    node.update(|s| s.counters.total += 1);
    let faults = node.faults();
    let decision = faults.decide(shared.seed, idx, node.next_seq());
    if let Some(d) = decision.delay {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        node.update(|s| s.counters.delay_ms = s.counters.delay_ms.saturating_add(ms));
        tokio::time::sleep(d).await;
    }
    if decision.hang {
        // Accept but never answer; the connection ends at shutdown or client timeout.
        std::future::pending::<()>().await;
    }
    let resp = route(&shared, &node, req, decision.error).await;
    Ok(match decision.malformed {
        Some(m) if resp.1 => malform(resp.0, m).await,
        _ => resp.0,
    })
}

/// Returns the response and whether it is an XML document (for `malformed`).
async fn route(
    shared: &Shared,
    node: &NodeHandle,
    req: Request<Incoming>,
    injected: Option<ErrorKind>,
) -> (Resp, bool) {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // A controller whose Redfish is off (or whose firmware has none usable) answers
    // every Redfish path 404, as for any unknown path.
    let route = Route::find(&path)
        .filter(|r| !r.is_redfish() || node.update(|s| s.redfish.unwrap_or(shared.env.redfish)));
    let Some(route) = route else {
        node.update(|s| s.counters.not_found += 1);
        tracing::debug!(node = node.index(), %method, %path, "unknown path");
        return (plain(StatusCode::NOT_FOUND, "404 Not Found"), false);
    };
    if !route.allowed().contains(&method) {
        let allow = route
            .allowed()
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        return (
            respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "405 Method Not Allowed",
                &[(header::ALLOW, allow)],
            ),
            false,
        );
    }
    if route != Route::RedfishRoot
        && let Some(r) = authorize(shared, node, route, &req)
    {
        return (r, false);
    }
    if let Some(kind) = injected {
        tracing::debug!(node = node.index(), %path, "injected error");
        if kind == ErrorKind::Scci && route == Route::Config {
            let f = ScciFailure {
                value: scci::values::INJECTED,
                oc: "Unknown".into(),
                oe: "0".into(),
                text: "Injected fault".into(),
            };
            return (xml(f.reply()), true);
        }
        return (
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error",
            ),
            false,
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return (
                plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large or unreadable",
                ),
                false,
            );
        }
    };
    let xml_route = route.is_xml();
    let resp = match route {
        Route::Config => config(shared, node, &body),
        Route::Report => {
            let own = node.update(|s| {
                s.counters.report += 1;
                s.report.clone()
            });
            let doc = match (own, &shared.report) {
                (Some(r), _) => r,
                (None, Some(r)) => r.to_string(),
                (None, None) => {
                    report::generate(shared.model, &shared.firmware, node.address(), node.index())
                }
            };
            xml(doc)
        }
        Route::Settings => {
            node.update(|s| s.counters.settings += 1);
            xml(scci::settings_dump(node))
        }
        Route::ElcmStatus => {
            node.update(|s| s.counters.elcm += 1);
            json_resp(
                StatusCode::OK,
                &json!({"eLCMStatus": {"EnabledAndLicenced": "true", "SDCardMounted": "false"}}),
            )
        }
        Route::RedfishRoot => {
            node.update(|s| s.counters.redfish_get += 1);
            json_resp(StatusCode::OK, &redfish_root(node))
        }
        Route::Systems => {
            node.update(|s| s.counters.redfish_get += 1);
            json_resp(
                StatusCode::OK,
                &json!({"@odata.id": "/redfish/v1/Systems",
                    "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
                    "Name": "Computer System Collection", "Members@odata.count": 1,
                    "Members": [{"@odata.id": "/redfish/v1/Systems/0"}]}),
            )
        }
        Route::EthernetInterfaces => {
            node.update(|s| s.counters.redfish_get += 1);
            json_resp(StatusCode::OK, &crate::ethernet::collection())
        }
        Route::EthernetInterface(n) => {
            node.update(|s| s.counters.redfish_get += 1);
            match crate::ethernet::member(node.address(), n) {
                Some(v) => json_resp(StatusCode::OK, &v),
                None => redfish_error(
                    StatusCode::NOT_FOUND,
                    "Base.1.0.ResourceMissingAtURI",
                    "no such Ethernet interface",
                ),
            }
        }
        Route::System if method == Method::GET => {
            node.update(|s| s.counters.redfish_get += 1);
            json_resp(StatusCode::OK, &system_json(shared, node))
        }
        Route::System => {
            node.update(|s| s.counters.redfish_patch += 1);
            patch_system(node, &body)
        }
        Route::Reset => {
            node.update(|s| s.counters.redfish_post += 1);
            reset(node, &body)
        }
        Route::OemVirtualMedia if method == Method::GET => {
            node.update(|s| s.counters.redfish_get += 1);
            json_resp(StatusCode::OK, &crate::redfish_oem::vm_json(node))
        }
        Route::OemVirtualMedia => {
            node.update(|s| s.counters.redfish_patch += 1);
            match crate::redfish_oem::patch(node, &body) {
                Ok(v) => json_resp(StatusCode::OK, &v),
                Err((_, msg)) => redfish_error(
                    StatusCode::BAD_REQUEST,
                    "Base.1.0.PropertyValueFormatError",
                    &msg,
                ),
            }
        }
        Route::OemVirtualMediaAction => {
            node.update(|s| s.counters.redfish_post += 1);
            match crate::redfish_oem::action(node, shared.model, shared.env.licensed, &body) {
                Ok(()) => plain(StatusCode::NO_CONTENT, ""),
                Err((_, msg)) => {
                    redfish_error(StatusCode::BAD_REQUEST, "Base.1.0.ActionNotSupported", &msg)
                }
            }
        }
    };
    (resp, xml_route)
}

/// Check credentials; `Some(response)` when the request is refused.
fn authorize(
    shared: &Shared,
    node: &NodeHandle,
    route: Route,
    req: &Request<Incoming>,
) -> Option<Resp> {
    let now = now_unix();
    let hdr = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let uri = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let digest = || {
        auth::check_digest(
            hdr,
            req.method().as_str(),
            &uri,
            &shared.username,
            &shared.password,
            &shared.digest_secret,
            now,
        )
    };
    // Redfish takes Basic in both modes (and Digest when configured); SCCI/eLCM take
    // only the configured scheme.
    let verdict = match (shared.auth, route.is_redfish()) {
        (Auth::Basic, _) => auth::check_basic(hdr, &shared.username, &shared.password),
        (Auth::Digest, false) => digest(),
        (Auth::Digest, true) => match auth::check_basic(hdr, &shared.username, &shared.password) {
            Verdict::Ok => Verdict::Ok,
            _ => digest(),
        },
    };
    if verdict == Verdict::Ok {
        return None;
    }
    node.update(|s| s.counters.unauthorized += 1);
    // Never log the header: it carries the password (Basic) or a digest of it.
    tracing::debug!(node = node.index(), path = %req.uri().path(), "unauthorized");
    let challenge = match shared.auth {
        Auth::Basic => auth::basic_challenge(),
        Auth::Digest => {
            auth::digest_challenge(&shared.digest_secret, now, verdict == Verdict::Stale)
        }
    };
    if route.is_redfish() {
        return Some(respond(
            StatusCode::UNAUTHORIZED,
            "application/json; charset=utf-8",
            r#"{"error":{"code":"Base.1.0.GeneralError","message":"Unauthorized"}}"#,
            &[(header::WWW_AUTHENTICATE, challenge)],
        ));
    }
    Some(respond(
        StatusCode::UNAUTHORIZED,
        "text/html",
        "<html><head><title>401 Unauthorized</title></head><body>401 Unauthorized</body></html>",
        &[(header::WWW_AUTHENTICATE, challenge)],
    ))
}

fn config(shared: &Shared, node: &NodeHandle, body: &[u8]) -> Resp {
    node.update(|s| s.counters.config_posts += 1);
    let text = String::from_utf8_lossy(body);
    let reply = match scci::parse_cmdseq(&text) {
        Ok(cmds) if !cmds.is_empty() => scci::execute(node, shared.env, &cmds),
        Ok(_) => ScciFailure {
            value: scci::values::INVALID_COMMAND,
            oc: "Unknown".into(),
            oe: "0".into(),
            text: "Empty command sequence".into(),
        }
        .reply(),
        Err(e) => {
            tracing::info!(node = node.index(), bmc = %node.address(), error = %e.0, "unparsable SCCI request");
            ScciFailure {
                value: scci::values::INVALID_COMMAND,
                oc: "Unknown".into(),
                oe: "0".into(),
                text: format!("Invalid SCCI XML: {}", e.0),
            }
            .reply()
        }
    };
    xml(reply)
}

fn redfish_root(node: &NodeHandle) -> serde_json::Value {
    json!({
        "@odata.id": "/redfish/v1/",
        "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
        "Id": "RootService",
        "Name": "Root Service",
        "RedfishVersion": "1.11.0",
        "UUID": node_uuid(node, 0xaa),
        "Systems": {"@odata.id": "/redfish/v1/Systems"},
        "Vendor": "Fujitsu",
    })
}

fn node_uuid(node: &NodeHandle, tag: u8) -> String {
    let ip = node.address().octets();
    format!(
        "{:02x}{:02x}{:02x}{:02x}-0000-4000-8000-{:012x}",
        ip[0],
        ip[1],
        ip[2],
        ip[3],
        ((tag as u64) << 40) | node.index() as u64
    )
}

fn system_json(shared: &Shared, node: &NodeHandle) -> serde_json::Value {
    let (power, boot) = node.update(|s| (s.power, s.boot));
    let targets: Vec<&str> = BootTarget::ALL.iter().map(|t| t.as_str()).collect();
    json!({
        "@odata.id": "/redfish/v1/Systems/0",
        "@odata.type": "#ComputerSystem.v1_13_0.ComputerSystem",
        "Id": "0",
        "Name": shared.model.server_model(),
        "Manufacturer": "FUJITSU",
        "Model": shared.model.server_model(),
        "SystemType": "Physical",
        "UUID": node_uuid(node, 0x01),
        "PowerState": power.as_redfish(),
        "EthernetInterfaces": {"@odata.id": crate::ethernet::COLLECTION},
        "Boot": {
            "BootSourceOverrideTarget": boot.target.as_str(),
            "BootSourceOverrideEnabled": boot.enabled.as_str(),
            "BootSourceOverrideMode": boot.mode.as_str(),
            "BootSourceOverrideTarget@Redfish.AllowableValues": targets,
        },
        "Actions": {"#ComputerSystem.Reset": {
            "target": "/redfish/v1/Systems/0/Actions/ComputerSystem.Reset",
            "ResetType@Redfish.AllowableValues":
                ["On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "PowerCycle"],
            },
            "Oem": {"#FTSComputerSystem.VirtualMedia": crate::redfish_oem::action_json(node, shared.model)},
        },
    })
}

fn patch_system(node: &NodeHandle, body: &[u8]) -> Resp {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return redfish_error(
                StatusCode::BAD_REQUEST,
                "Base.1.0.MalformedJSON",
                &format!("malformed JSON: {e}"),
            );
        }
    };
    let Some(boot) = v.get("Boot").and_then(|b| b.as_object()) else {
        return redfish_error(
            StatusCode::BAD_REQUEST,
            "Base.1.0.PropertyMissing",
            "only Boot can be patched",
        );
    };
    let mut new = node.update(|s| s.boot);
    for (k, val) in boot {
        let s = val.as_str().unwrap_or("");
        let ok = match k.as_str() {
            "BootSourceOverrideTarget" => BootTarget::parse(s).map(|t| new.target = t).is_some(),
            "BootSourceOverrideEnabled" => BootEnabled::parse(s).map(|e| new.enabled = e).is_some(),
            "BootSourceOverrideMode" => BootMode::parse(s).map(|m| new.mode = m).is_some(),
            _ => {
                return redfish_error(
                    StatusCode::BAD_REQUEST,
                    "Base.1.0.PropertyNotWritable",
                    &format!("property Boot/{k} is not writable"),
                );
            }
        };
        if !ok {
            return redfish_error(
                StatusCode::BAD_REQUEST,
                "Base.1.0.PropertyValueNotInList",
                &format!("value {val} is not allowed for Boot/{k}"),
            );
        }
    }
    node.update(|s| s.boot = new);
    tracing::debug!(
        node = node.index(),
        target = new.target.as_str(),
        enabled = new.enabled.as_str(),
        "boot override"
    );
    respond(
        StatusCode::NO_CONTENT,
        "application/json",
        Bytes::new(),
        &[],
    )
}

fn reset(node: &NodeHandle, body: &[u8]) -> Resp {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return redfish_error(
                StatusCode::BAD_REQUEST,
                "Base.1.0.MalformedJSON",
                &format!("malformed JSON: {e}"),
            );
        }
    };
    let kind = v.get("ResetType").and_then(|t| t.as_str()).unwrap_or("");
    match kind {
        "On" => {
            node.power_on();
        }
        "ForceOff" | "GracefulShutdown" => {
            // Graceful shutdown goes through ACPI, which any OS honours here.
            node.power_off();
        }
        "GracefulRestart" | "ForceRestart" => {
            node.reset("reset");
        }
        "PowerCycle" => {
            node.reset("power-cycle");
        }
        "Nmi" => {}
        _ => {
            return redfish_error(
                StatusCode::BAD_REQUEST,
                "Base.1.0.ActionParameterValueNotInList",
                &format!("ResetType {kind:?} is not supported"),
            );
        }
    }
    respond(
        StatusCode::NO_CONTENT,
        "application/json",
        Bytes::new(),
        &[],
    )
}

/// Damage an XML reply the way a confused BMC does.
async fn malform(resp: Resp, how: Malformed) -> Resp {
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let new = match how {
        Malformed::Truncated => bytes.slice(..bytes.len() / 2),
        Malformed::Unescaped => {
            // An error reply echoing request text unescaped, as real firmware does.
            Bytes::from_static(
                b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Status><Value>31</Value><Severity>Error</Severity><Message>Error 31 occurred</Message><Error Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A62\" OI=\"0\">Invalid value <DATA Type=\"xsd::string\">a&b</Error></Status>",
            )
        }
    };
    let mut r = Response::from_parts(parts, Full::new(new));
    r.headers_mut().remove(header::CONTENT_LENGTH);
    r
}

/// Used by the control API: counters for `GET /counters`.
pub(crate) fn counters_by_node(nodes: &[NodeHandle]) -> BTreeMap<usize, RequestCounters> {
    nodes
        .iter()
        .map(|n| (n.index(), n.update(|s| s.counters.clone())))
        .collect()
}
