//! Who may see the dashboard: the API's tokens, through a session cookie or the bearer
//! header. Sessions live in memory (a restart signs everyone out) and expire after
//! [`SESSION_TTL`]; at most [`MAX_SESSIONS`] exist at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use rand::RngCore as _;

use super::{App, pages};
use crate::security::Role;

/// Name of the session cookie.
pub const COOKIE: &str = "vmedia_session";
/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; a sign-in beyond it is refused (503) until some expire.
pub const MAX_SESSIONS: usize = 10_000;

/// Who is looking.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub role: Role,
    /// The token's name from the token file ("development" when there is none).
    pub name: String,
    /// Signed in with a session cookie (so a sign-out button makes sense).
    pub session: bool,
}

#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, (Viewer, Instant)>>);

impl Sessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Viewer, Instant)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn create(&self, v: Viewer) -> Option<String> {
        let mut map = self.map();
        let now = Instant::now();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, (_, exp)| *exp > now);
            if map.len() >= MAX_SESSIONS {
                return None;
            }
        }
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        map.insert(id.clone(), (v, now + SESSION_TTL));
        Some(id)
    }

    fn get(&self, id: &str) -> Option<Viewer> {
        let mut map = self.map();
        match map.get(id) {
            Some((v, exp)) if *exp > Instant::now() => Some(v.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    fn remove(&self, id: &str) {
        self.map().remove(id);
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

impl App {
    /// The viewer of a request, or `None` (then the request gets 401).
    fn viewer(&self, headers: &HeaderMap) -> Option<Viewer> {
        let Some(tokens) = &self.0.policy.tokens else {
            return Some(Viewer {
                role: Role::Admin,
                name: "development".into(),
                session: false,
            });
        };
        if let Some(t) = bearer(headers) {
            return tokens.role_of(t).map(|(role, name)| Viewer {
                role,
                name: name.to_owned(),
                session: false,
            });
        }
        cookie_value(headers, COOKIE).and_then(|id| self.0.sessions.get(id))
    }
}

/// Middleware in front of every protected route.
pub async fn require(State(app): State<App>, mut req: Request, next: Next) -> Response {
    match app.viewer(req.headers()) {
        Some(v) => {
            req.extensions_mut().insert(v);
            next.run(req).await
        }
        None => {
            let path = req.uri().path();
            if path.starts_with("/api/") {
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    axum::Json(serde_json::json!({
                        "error": "sign in: send `authorization: Bearer <token>` or a session cookie from /login"
                    })),
                )
                    .into_response()
            } else {
                pages::login_page(StatusCode::UNAUTHORIZED, None)
            }
        }
    }
}

pub async fn login_form(State(app): State<App>, headers: HeaderMap) -> Response {
    if app.viewer(&headers).is_some() && app.0.policy.tokens.is_some() {
        return Redirect::to("/").into_response();
    }
    pages::login_page(StatusCode::OK, None)
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login(State(app): State<App>, form: axum::Form<LoginForm>) -> Response {
    let Some(tokens) = &app.0.policy.tokens else {
        return Redirect::to("/").into_response();
    };
    let Some((role, name)) = tokens.role_of(form.token.trim()) else {
        tracing::warn!("dashboard sign-in refused: unknown token");
        return pages::login_page(
            StatusCode::UNAUTHORIZED,
            Some("That token is not valid. Use an admin or reader API token."),
        );
    };
    let viewer = Viewer {
        role,
        name: name.to_owned(),
        session: true,
    };
    let Some(id) = app.0.sessions.create(viewer) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many sessions; try later",
        )
            .into_response();
    };
    tracing::info!(token = name, role = role.as_str(), "dashboard sign-in");
    let secure = if app.0.https { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/".to_owned()),
        ],
    )
        .into_response()
}

pub async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_value(&headers, COOKIE) {
        app.0.sessions.remove(id);
    }
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/login".to_owned()),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; vmedia_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("abc"));
        assert_eq!(cookie_value(&h, "c"), None);
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let s = Sessions::default();
        let v = Viewer {
            role: Role::Reader,
            name: "r".into(),
            session: true,
        };
        let id = s.create(v.clone()).unwrap();
        assert_eq!(s.get(&id).map(|v| v.role), Some(Role::Reader));
        assert!(s.get("nope").is_none());
        s.map().insert("old".into(), (v, Instant::now()));
        assert!(s.get("old").is_none(), "an expired session is gone");
        s.remove(&id);
        assert!(s.get(&id).is_none());
    }
}
