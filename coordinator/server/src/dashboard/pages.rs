//! Server-rendered pages. Every value from the fleet goes through [`esc`]; the pages work
//! without script (forms and links), and `assets/app.js` only keeps them current.

use std::fmt::Write as _;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use coordinator_core::ProvisionState;
use coordinator_store::StateChange;
use vmedia_proto::v1 as pb;

use super::auth::Viewer;
use super::data::{ListParams, NodeQuery, Summary};
use super::{App, Fail};
use crate::domain::ShareView;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

pub async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CSS,
    )
        .into_response()
}

pub async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        JS,
    )
        .into_response()
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Milliseconds since the epoch as UTC text ("-" for 0).
pub fn when(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Security headers of every page.
fn headers() -> [(header::HeaderName, &'static str); 4] {
    [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ]
}

fn page(
    status: StatusCode,
    title: &str,
    viewer: Option<&Viewer>,
    body_attrs: &str,
    main: &str,
) -> Response {
    let mut h = String::with_capacity(main.len() + 1024);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/static/app.css\">\
         <script src=\"/static/app.js\" defer></script></head>\
         <body{body_attrs}><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><p class=\"brand\"><a href=\"/\">vmedia fleet</a></p>",
        esc(title)
    );
    if let Some(v) = viewer {
        let _ = write!(
            h,
            "<div class=\"who\">Signed in as <strong>{}</strong> ({})",
            esc(&v.name),
            v.role.as_str()
        );
        if v.session {
            h.push_str(
                " <form class=\"inline\" method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out</button></form>",
            );
        }
        h.push_str("</div><p id=\"live\" class=\"live\" role=\"status\" aria-live=\"polite\">Live updates: off</p>");
    }
    let _ = writeln!(h, "</header><main id=\"main\">{main}</main></body></html>");
    (status, headers(), Html(h)).into_response()
}

pub fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let mut m = String::from("<h1>Sign in</h1>");
    if let Some(e) = error {
        let _ = write!(m, "<p class=\"error\" role=\"alert\">{}</p>", esc(e));
    }
    m.push_str(
        "<form method=\"post\" action=\"/login\" class=\"login\">\
         <p><label for=\"token\">API token (admin or reader)</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required maxlength=\"1024\" autofocus></p>\
         <p><button type=\"submit\">Sign in</button></p></form>\
         <p class=\"hint\">The same tokens as the gRPC API (the coordinator's <code>tokens_file</code>).</p>",
    );
    page(status, "Sign in - vmedia fleet", None, "", &m)
}

fn fail_page(v: &Viewer, f: &Fail) -> Response {
    let m = format!(
        "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"/\">Back to the fleet</a></p>",
        f.status().canonical_reason().unwrap_or("Error"),
        esc(f.text())
    );
    page(f.status(), "Error - vmedia fleet", Some(v), "", &m)
}

fn state_link(q: &NodeQuery, state: Option<&str>) -> String {
    let mut url = String::from("/?");
    if !q.q.is_empty() {
        let _ = write!(url, "q={}&", enc(&q.q));
    }
    if let Some(s) = state {
        let _ = write!(url, "state={}&", enc(s));
    }
    let _ = write!(url, "limit={}", q.limit);
    url
}

fn summary_html(h: &mut String, s: &Summary) {
    let _ = write!(
        h,
        "<section aria-labelledby=\"h-states\"><h2 id=\"h-states\">Provision states</h2>\
         <table id=\"states\"><caption>Nodes by provision state: <span id=\"total\">{}</span> in all</caption>\
         <thead><tr><th scope=\"col\">State</th><th scope=\"col\" class=\"num\">Nodes</th></tr></thead><tbody>",
        s.total
    );
    for (state, n) in &s.counts {
        let _ = write!(
            h,
            "<tr data-state=\"{0}\"><th scope=\"row\"><a href=\"/?state={1}\">{0}</a></th><td class=\"num\">{2}</td></tr>",
            esc(state),
            enc(state),
            n
        );
    }
    h.push_str("</tbody></table></section>");
    let f = &s.failures;
    h.push_str(
        "<section aria-labelledby=\"h-failures\"><h2 id=\"h-failures\">Failures by reason</h2>\
         <table id=\"failures\"><caption>Nodes with a last error, grouped by state and reason",
    );
    if f.capped {
        let _ = write!(h, " (the first {} examined)", f.examined);
    }
    h.push_str(
        "</caption><thead><tr><th scope=\"col\">Reason</th><th scope=\"col\">State</th>\
         <th scope=\"col\" class=\"num\">Nodes</th><th scope=\"col\">Example</th></tr></thead><tbody>",
    );
    if f.groups.is_empty() {
        h.push_str("<tr><td colspan=\"4\">No failures.</td></tr>");
    }
    for g in &f.groups {
        let label = if g.example.1.is_empty() {
            &g.example.0
        } else {
            &g.example.1
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td><a href=\"/node/{}\">{}</a></td></tr>",
            esc(&g.reason),
            esc(&g.state),
            g.count,
            enc(&g.example.0),
            esc(label)
        );
    }
    h.push_str("</tbody></table></section>");
}

fn shares_html(h: &mut String, shares: Option<&[ShareView]>) {
    h.push_str("<section aria-labelledby=\"h-shares\"><h2 id=\"h-shares\">Share agents</h2>");
    let Some(shares) = shares else {
        h.push_str("<p>Share agents are known to the leading coordinator only; this replica does not lead.</p></section>");
        return;
    };
    h.push_str(
        "<table id=\"shares\"><caption>Every share agent: boots in flight against its capacity</caption>\
         <thead><tr><th scope=\"col\">Agent</th><th scope=\"col\">Health</th><th scope=\"col\">Load</th>\
         <th scope=\"col\" class=\"num\">Queued</th><th scope=\"col\" class=\"num\">Nodes placed</th>\
         <th scope=\"col\">Share</th><th scope=\"col\" class=\"num\">Free</th></tr></thead><tbody>",
    );
    if shares.is_empty() {
        h.push_str("<tr><td colspan=\"7\">No share agent has connected.</td></tr>");
    }
    for s in shares {
        let share = s
            .share
            .as_ref()
            .map(|i| format!("{} //{}/{}", i.share_type, i.server, i.share_name))
            .unwrap_or_else(|| "-".into());
        let _ = write!(
            h,
            "<tr data-agent=\"{id}\"><th scope=\"row\">{id}</th><td class=\"health-{health}\">{health}</td>\
             <td><meter min=\"0\" max=\"{cap}\" value=\"{act}\" aria-label=\"load of {id}\">{act}/{cap}</meter> {act} / {cap}</td>\
             <td class=\"num\">{queued}</td><td class=\"num\">{nodes}</td><td>{share}</td><td class=\"num\">{free}</td></tr>",
            id = esc(s.agent.as_str()),
            health = s.health.as_str(),
            cap = s.capacity,
            act = s.active,
            queued = s.queued,
            nodes = s.nodes,
            share = esc(&share),
            free = bytes(s.free_bytes),
        );
    }
    h.push_str("</tbody></table></section>");
}

fn bytes(b: u64) -> String {
    bytesize_text(b)
}

fn bytesize_text(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A node's table row; the cells carry `data-col` so the script can update them.
pub fn node_row(h: &mut String, n: &pb::Node) {
    let name = if n.name.is_empty() { "-" } else { &n.name };
    let state = if n.target_provision_state.is_empty() {
        esc(&n.provision_state)
    } else {
        format!(
            "{} <span class=\"target\">→ {}</span>",
            esc(&n.provision_state),
            esc(&n.target_provision_state)
        )
    };
    let _ = write!(
        h,
        "<tr data-uuid=\"{uuid}\"><th scope=\"row\"><a href=\"/node/{uuid}\">{name}</a></th>\
         <td class=\"uuid\">{uuid}</td><td data-col=\"state\">{state}</td><td data-col=\"power\">{power}</td>\
         <td data-col=\"share\">{share}</td><td data-col=\"last_error\">{err}</td></tr>",
        uuid = esc(&n.uuid),
        name = esc(name),
        power = esc(if n.power_state.is_empty() {
            "-"
        } else {
            &n.power_state
        }),
        share = esc(if n.share.is_empty() { "-" } else { &n.share }),
        err = esc(&n.last_error),
    );
}

pub async fn index(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Query(params): Query<ListParams>,
) -> Response {
    let q = match params.validate() {
        Ok(q) => q,
        Err(f) => return fail_page(&v, &f),
    };
    let (summary, rows, shares) = tokio::join!(app.summary(), app.node_page(&q), app.shares());
    let (summary, rows) = match (summary, rows) {
        (Ok(s), Ok(p)) => (s, p),
        (Err(f), _) | (_, Err(f)) => return fail_page(&v, &f),
    };
    let mut m = String::with_capacity(16 * 1024);
    m.push_str("<h1>Fleet</h1>");
    summary_html(&mut m, &summary);
    shares_html(&mut m, shares.as_deref());

    m.push_str("<section aria-labelledby=\"h-nodes\"><h2 id=\"h-nodes\">Nodes</h2>");
    let _ = write!(
        m,
        "<form role=\"search\" method=\"get\" action=\"/\" class=\"search\">\
         <p><label for=\"q\">Name or uuid contains</label> \
         <input id=\"q\" name=\"q\" type=\"search\" maxlength=\"128\" value=\"{}\"></p>\
         <p><label for=\"state\">Provision state</label> <select id=\"state\" name=\"state\">\
         <option value=\"\">any</option>",
        esc(&q.q)
    );
    for s in ProvisionState::ALL {
        let sel = if q.state == Some(s) { " selected" } else { "" };
        let _ = write!(m, "<option value=\"{0}\"{sel}>{0}</option>", s.as_str());
    }
    let _ = write!(
        m,
        "</select></p><p><label for=\"limit\">Rows per page</label> \
         <input id=\"limit\" name=\"limit\" type=\"number\" min=\"1\" max=\"{}\" value=\"{}\"></p>\
         <p><button type=\"submit\">Search</button></p></form>",
        super::MAX_PAGE,
        q.limit
    );
    let filter = match (q.q.is_empty(), q.state) {
        (true, None) => String::from("all nodes"),
        (false, None) => format!("nodes matching “{}”", esc(&q.q)),
        (true, Some(s)) => format!("nodes in state {}", s.as_str()),
        (false, Some(s)) => format!("nodes matching “{}” in state {}", esc(&q.q), s.as_str()),
    };
    let _ = write!(
        m,
        "<table id=\"nodes\"><caption>Page {} of {filter} ({} shown, by uuid)</caption>\
         <thead><tr><th scope=\"col\">Name</th><th scope=\"col\">UUID</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Power</th><th scope=\"col\">Share</th><th scope=\"col\">Last error</th></tr></thead><tbody>",
        q.page,
        rows.nodes.len()
    );
    if rows.nodes.is_empty() {
        m.push_str("<tr><td colspan=\"6\">No node matches.</td></tr>");
    }
    for n in &rows.nodes {
        node_row(&mut m, n);
    }
    m.push_str("</tbody></table><nav aria-label=\"Pages of nodes\" class=\"pager\"><ul>");
    let base = state_link(&q, q.state.map(|s| s.as_str()));
    if q.marker.is_some() {
        let _ = write!(m, "<li><a href=\"{}\">First page</a></li>", esc(&base));
    }
    if let Some(next) = rows.next {
        let _ = write!(
            m,
            "<li><a rel=\"next\" id=\"next-page\" href=\"{}\">Next page</a></li>",
            esc(&format!("{base}&marker={next}&page={}", q.page + 1))
        );
    }
    m.push_str("</ul></nav></section>");
    page(
        StatusCode::OK,
        "Fleet - vmedia",
        Some(&v),
        " data-view=\"fleet\"",
        &m,
    )
}

fn map_rows(h: &mut String, title: &str, map: &std::collections::HashMap<String, String>) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let _ = write!(
        h,
        "<table class=\"kv\"><caption>{}</caption><thead><tr><th scope=\"col\">Key</th><th scope=\"col\">Value</th></tr></thead><tbody>",
        esc(title)
    );
    if keys.is_empty() {
        h.push_str("<tr><td colspan=\"2\">-</td></tr>");
    }
    for k in keys {
        let _ = write!(
            h,
            "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
            esc(k),
            esc(&map[k])
        );
    }
    h.push_str("</tbody></table>");
}

pub fn history_rows(h: &mut String, history: &[StateChange]) {
    for c in history.iter().rev() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            when(c.at_ms),
            c.from.as_str(),
            c.to.as_str(),
            esc(c.last_error.as_deref().unwrap_or(""))
        );
    }
}

pub async fn node(
    State(app): State<App>,
    Extension(v): Extension<Viewer>,
    Path(id): Path<String>,
) -> Response {
    let (n, history) = match app.node(&id).await {
        Ok(x) => x,
        Err(f) => return fail_page(&v, &f),
    };
    let title = if n.name.is_empty() { &n.uuid } else { &n.name };
    let mut m = String::with_capacity(8 * 1024);
    let _ = write!(m, "<h1>Node {}</h1>", esc(title));
    m.push_str("<dl class=\"facts\">");
    let target = if n.target_provision_state.is_empty() {
        "-"
    } else {
        &n.target_provision_state
    };
    let facts: [(&str, String, &str); 10] = [
        ("UUID", n.uuid.clone(), "uuid"),
        ("Name", n.name.clone(), "name"),
        ("Provision state", n.provision_state.clone(), "state"),
        ("Target state", target.to_owned(), "target"),
        ("Power", n.power_state.clone(), "power"),
        ("Share agent", n.share.clone(), "share"),
        ("Progress", n.progress.clone(), "progress"),
        ("Last error", n.last_error.clone(), "last_error"),
        ("Queue position", n.queue_position.to_string(), "queue"),
        ("State changed", when(n.provision_updated_at_ms), "changed"),
    ];
    for (k, val, col) in facts {
        let _ = write!(
            m,
            "<div><dt>{k}</dt><dd data-col=\"{col}\">{}</dd></div>",
            esc(if val.is_empty() { "-" } else { &val })
        );
    }
    m.push_str("</dl>");
    m.push_str("<section aria-labelledby=\"h-history\"><h2 id=\"h-history\">State changes</h2>\
        <table id=\"history\"><caption>The last state changes of this node, newest first</caption>\
        <thead><tr><th scope=\"col\">When (UTC)</th><th scope=\"col\">From</th><th scope=\"col\">To</th><th scope=\"col\">Last error</th></tr></thead><tbody>");
    history_rows(&mut m, &history);
    m.push_str("</tbody></table></section>");
    m.push_str("<section aria-labelledby=\"h-spec\"><h2 id=\"h-spec\">Definition</h2>");
    map_rows(&mut m, "driver_info (secrets masked)", &n.driver_info);
    map_rows(&mut m, "instance_info (secrets masked)", &n.instance_info);
    map_rows(&mut m, "properties", &n.properties);
    let _ = write!(
        m,
        "<p>MACs: {}</p></section>",
        esc(&if n.macs.is_empty() {
            "-".to_owned()
        } else {
            n.macs.join(", ")
        })
    );
    let attrs = format!(" data-view=\"node\" data-node=\"{}\"", esc(&n.uuid));
    page(
        StatusCode::OK,
        &format!("{title} - vmedia"),
        Some(&v),
        &attrs,
        &m,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html_and_urls() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(enc("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(when(0), "-");
        assert_eq!(when(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(bytesize_text(512), "512 B");
        assert_eq!(bytesize_text(3 << 30), "3.0 GiB");
    }
}
