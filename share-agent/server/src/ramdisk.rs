//! Client for the deploy ramdisk's command API (ironic-python-agent's
//! `/v1/commands/`), as Ironic's agent client drives it.
//!
//! The agent token travels in the query string, so transport errors are
//! stripped of their URL before they reach an error message or a log line.

use std::time::Duration;

use serde_json::Value;

use crate::error::AgentError;
use secret::Secret;

/// One ramdisk, reached at its heartbeat `callback_url`.
pub struct RamdiskClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
    node: String,
    bmc: String,
    /// HTTP requests sent so far.
    pub requests: u32,
}

/// The state of one command as the ramdisk reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandStatus {
    /// Still running.
    Running,
    /// Done; the result object.
    Succeeded,
    /// Failed; the error text.
    Failed(String),
    /// Any other status (e.g. CLEAN_VERSION_MISMATCH).
    Other(String),
}

/// Largest reply accepted from a ramdisk. IPA's biggest, the command list after a
/// deploy, is a few tens of KB.
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// Reads `command_status` / `command_error` of a result object.
pub fn command_status(result: &Value) -> CommandStatus {
    match result.get("command_status").and_then(Value::as_str) {
        Some("RUNNING") => CommandStatus::Running,
        Some("SUCCEEDED") => CommandStatus::Succeeded,
        Some("FAILED") => CommandStatus::Failed(command_error_text(result)),
        Some(other) => CommandStatus::Other(other.to_string()),
        None => CommandStatus::Other("<no command_status>".to_string()),
    }
}

/// Ironic's rule: `command_error.details`, else `.message`, else the whole value.
pub fn command_error_text(result: &Value) -> String {
    match result.get("command_error") {
        None | Some(Value::Null) => "unknown error".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(e) => e
            .get("details")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| e.get("message").and_then(Value::as_str))
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string()),
    }
}

impl RamdiskClient {
    /// A client for the ramdisk at `callback_url`.
    pub fn new(
        http: reqwest::Client,
        callback_url: &str,
        token: Secret,
        node: &str,
        bmc: &str,
    ) -> Result<Self, AgentError> {
        let base = callback_url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(AgentError::InvalidJob {
                node: node.to_string(),
                field: "callback_url".to_string(),
                reason: format!("{base:?} is not an http(s) URL"),
            });
        }
        Ok(Self {
            http,
            base,
            token,
            node: node.to_string(),
            bmc: bmc.to_string(),
            requests: 0,
        })
    }

    fn err(&self, op: &str, reason: impl Into<String>, transient: bool) -> AgentError {
        // The reason may quote the ramdisk's own text: it must not carry the token back
        // (a hostile ramdisk can echo the request), control characters or a novel.
        let reason = irmc::scrub_bmc_text(&reason.into(), &[self.token.expose()]);
        AgentError::Ramdisk {
            node: self.node.clone(),
            bmc: self.bmc.clone(),
            operation: op.to_string(),
            reason,
            transient,
        }
    }

    fn transport(&self, op: &str, e: reqwest::Error) -> AgentError {
        // without_url: the URL carries agent_token.
        let transient = e.is_connect() || e.is_timeout();
        self.err(op, e.without_url().to_string(), transient)
    }

    async fn read_json(&self, op: &str, mut resp: reqwest::Response) -> Result<Value, AgentError> {
        let status = resp.status();
        // Bounded: a ramdisk (or whoever answers at its call-back URL) must not be able
        // to make the agent buffer an endless reply.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(op, e))? {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(self.err(
                    op,
                    format!("reply larger than {MAX_REPLY_BYTES} bytes"),
                    false,
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("faultstring")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
            // 409 = "Agent is busy": the ramdisk will take it later.
            return Err(self.err(op, format!("HTTP {status}: {text}"), status.as_u16() == 409));
        }
        serde_json::from_slice(&body)
            .map_err(|e| self.err(op, format!("reply is not JSON: {e}"), false))
    }

    /// `{base}/v1/commands/?<extra>&agent_token=T`, query values encoded.
    fn url(&self, op: &str, extra: &[(&str, &str)]) -> Result<reqwest::Url, AgentError> {
        let mut url = reqwest::Url::parse(&format!("{}/v1/commands/", self.base))
            .map_err(|e| self.err(op, format!("bad callback_url: {e}"), false))?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in extra {
                q.append_pair(k, v);
            }
            q.append_pair("agent_token", self.token.expose());
        }
        Ok(url)
    }

    /// `POST /v1/commands/?wait=..&agent_token=..`; returns the result object.
    /// With `wait`, a FAILED result is an error carrying `command_error`.
    pub async fn command(
        &mut self,
        name: &str,
        params: Value,
        wait: bool,
        timeout: Duration,
    ) -> Result<Value, AgentError> {
        let url = self.url(name, &[("wait", if wait { "true" } else { "false" })])?;
        self.requests += 1;
        let resp = self
            .http
            .post(url)
            .timeout(timeout)
            .json(&serde_json::json!({"name": name, "params": params}))
            .send()
            .await
            .map_err(|e| self.transport(name, e))?;
        let result = self.read_json(name, resp).await?;
        if let CommandStatus::Failed(text) = command_status(&result) {
            return Err(self.err(name, text, false));
        }
        Ok(result)
    }

    /// `GET /v1/commands/`: every command the ramdisk ran, oldest first.
    pub async fn list(&mut self, timeout: Duration) -> Result<Vec<Value>, AgentError> {
        let url = self.url("list commands", &[])?;
        self.requests += 1;
        let resp = self
            .http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.transport("list commands", e))?;
        let v = self.read_json("list commands", resp).await?;
        match v.get("commands") {
            Some(Value::Array(a)) => Ok(a.clone()),
            _ => Err(self.err("list commands", "reply has no \"commands\" list", false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let v = serde_json::json!({"command_status": "FAILED",
            "command_error": {"type": "ImageWriteError", "message": "m", "details": "disk full"}});
        assert_eq!(
            command_status(&v),
            CommandStatus::Failed("disk full".into())
        );
        let v = serde_json::json!({"command_status": "FAILED", "command_error": {"message": "m"}});
        assert_eq!(command_status(&v), CommandStatus::Failed("m".into()));
        let v = serde_json::json!({"command_status": "RUNNING"});
        assert_eq!(command_status(&v), CommandStatus::Running);
    }
}
