//! Power state, the one-time boot override and power polling, over the BMC's transport:
//! Redfish, or IPMI over LAN (`irmc_transport`, probed once per client for `auto`).

use super::*;
use crate::ipmi::{BootDevice, BootFlags};

impl IrmcClient {
    /// The IPMI-over-LAN client of this BMC (same address, user and password).
    pub fn ipmi(&self) -> &IpmiClient {
        &self.inner.ipmi
    }

    /// The transport power state and boot device use: `cfg.transport`, or for `auto`
    /// what the first such call found (a Redfish read of the system resource here, when
    /// nothing was called yet). A failed probe is not cached.
    pub async fn transport(&self) -> Result<Transport, IrmcError> {
        if let Some(t) = self.inner.transport.get() {
            return Ok(*t);
        }
        self.with_transport(
            "get_power_state",
            async || self.system_info_for("get_power_state").await.map(|_| ()),
            async || Ok(()),
        )
        .await?;
        Ok(self
            .inner
            .transport
            .get()
            .copied()
            .unwrap_or(Transport::Redfish))
    }

    /// Runs `redfish` or `ipmi` per the transport in effect. Resolving `auto` costs no
    /// extra request: the Redfish call is tried; when the BMC has no Redfish service
    /// (HTTP 404/405/501, or a reply that is not the resource) Get Channel
    /// Authentication Capabilities over IPMI decides, and the answer is kept for the
    /// life of this client (the share agent keeps one client per BMC).
    async fn with_transport<T>(
        &self,
        op: &'static str,
        redfish: impl AsyncFnOnce() -> Result<T, IrmcError>,
        ipmi: impl AsyncFnOnce() -> Result<T, IrmcError>,
    ) -> Result<T, IrmcError> {
        match self.inner.transport.get() {
            Some(Transport::Ipmi) => return ipmi().await,
            Some(_) => return redfish().await,
            None => {}
        }
        let set = |t: Transport| {
            let _ = self.inner.transport.set(t);
            tracing::debug!(bmc = %self.inner.cfg.address, operation = op, transport = %t, "irmc_transport auto resolved");
        };
        match redfish().await {
            Ok(v) => {
                set(Transport::Redfish);
                Ok(v)
            }
            Err(
                e @ (IrmcError::Http {
                    status: 404 | 405 | 501,
                    ..
                }
                | IrmcError::Malformed { .. }),
            ) => match self.inner.ipmi.probe().await {
                Ok(_) => {
                    set(Transport::Ipmi);
                    ipmi().await
                }
                Err(probe) => {
                    tracing::debug!(bmc = %self.inner.cfg.address, error = %probe, "no Redfish, and the IPMI probe failed");
                    Err(e)
                }
            },
            Err(e) => Err(e),
        }
    }

    /// The power state, over the transport in effect (`get_power_state`). IPMI knows
    /// only on and off.
    pub async fn power_state(&self) -> Result<PowerState, IrmcError> {
        self.power_state_for("get_power_state").await
    }

    async fn power_state_for(&self, op: &'static str) -> Result<PowerState, IrmcError> {
        self.with_transport(
            op,
            async || Ok(self.system_info_for(op).await?.0.power_state),
            async || {
                Ok(if self.inner.ipmi.power_on().await? {
                    PowerState::On
                } else {
                    PowerState::Off
                })
            },
        )
        .await
    }

    /// Sets the boot device over the transport in effect (`set_boot_device`).
    ///
    /// Redfish: a PATCH of the boot source override; one request, and when the BMC
    /// answers 412/428 (it wants `If-Match`) the ETag is fetched and the PATCH repeated
    /// once. IPMI: Set System Boot Options, boot flags; `Cd` is the iRMC's remotely
    /// connected CD/DVD (selector 1000b, data 2 = 0x20), which is its virtual CD, as in
    /// Ironic's iRMC driver; `None` clears the valid bit.
    pub async fn set_boot_override(
        &self,
        target: BootTarget,
        persistence: BootPersistence,
        mode: BootMode,
    ) -> Result<(), IrmcError> {
        const OP: &str = "set_boot_device";
        self.with_transport(
            OP,
            async || self.redfish_boot_override(target, persistence, mode).await,
            async || {
                self.inner
                    .ipmi
                    .set_boot_flags(ipmi_boot_flags(target, persistence, mode))
                    .await
            },
        )
        .await
    }

    async fn redfish_boot_override(
        &self,
        target: BootTarget,
        persistence: BootPersistence,
        mode: BootMode,
    ) -> Result<(), IrmcError> {
        const OP: &str = "set_boot_device";
        let body = Bytes::from(wire::boot_override_body(target, persistence, mode));
        let mk = |if_match: Option<HeaderValue>| Req {
            method: Method::PATCH,
            path: self.system_path().into(),
            content_type: Some("application/json"),
            body: body.clone(),
            if_match,
            idempotent: true,
        };
        let mut reply = self.send(OP, mk(None)).await?;
        if reply.status == 404 && self.rediscover_system(OP).await? {
            reply = self.send(OP, mk(None)).await?;
        }
        let reply = if matches!(reply.status, 412 | 428) {
            let (_, etag) = self.system_info_for(OP).await?;
            let etag = etag.unwrap_or_else(|| HeaderValue::from_static("*"));
            self.send(OP, mk(Some(etag))).await?
        } else {
            reply
        };
        self.expect_success(OP, &reply, &[200, 202, 204])
    }

    /// `POST .../Actions/ComputerSystem.Reset` (`set_power_state`). Never
    /// resent once it may have reached the BMC.
    pub async fn redfish_reset(&self, kind: ResetType) -> Result<(), IrmcError> {
        const OP: &str = "set_power_state";
        let req = |system: String| Req {
            method: Method::POST,
            path: format!("{system}/Actions/ComputerSystem.Reset").into(),
            content_type: Some("application/json"),
            body: Bytes::from(wire::reset_body(kind)),
            if_match: None,
            idempotent: false,
        };
        let mut reply = self.send(OP, req(self.system_path())).await?;
        // A 404 did nothing: the action is safe to send once more, at the right place.
        if reply.status == 404 && self.rediscover_system(OP).await? {
            reply = self.send(OP, req(self.system_path())).await?;
        }
        self.expect_success(OP, &reply, &[200, 202, 204])
    }

    /// Polls the Redfish power state until it equals `want` or `limit`
    /// passes. Intervals start at `poll.interval` and double up to
    /// `poll.max_interval`; transient errors while polling are tolerated.
    pub async fn wait_power_state(
        &self,
        want: PowerState,
        limit: Duration,
    ) -> Result<(), IrmcError> {
        const OP: &str = "wait_power_state";
        let start = tokio::time::Instant::now();
        let poll = self.inner.cfg.poll;
        let mut interval = poll.interval.max(Duration::from_millis(1));
        loop {
            let last = match self.power_state_for(OP).await {
                Ok(state) if state == want => return Ok(()),
                Ok(state) => state.to_string(),
                Err(e) if e.is_transient() => format!("unknown ({e})"),
                Err(e) => return Err(e),
            };
            let elapsed = start.elapsed();
            if elapsed >= limit {
                return Err(IrmcError::PollTimeout {
                    ctx: self.ctx(OP),
                    want: want.to_string(),
                    last,
                    limit,
                });
            }
            tokio::time::sleep(interval.min(limit - elapsed)).await;
            interval = (interval * 2).min(poll.max_interval.max(poll.interval));
        }
    }

    // -- transport ----------------------------------------------------------
}

/// Boot flags for a Redfish-style override.
fn ipmi_boot_flags(target: BootTarget, persistence: BootPersistence, mode: BootMode) -> BootFlags {
    let device = match target {
        BootTarget::Cd => BootDevice::RemoteCdrom,
        BootTarget::Hdd => BootDevice::Disk,
        BootTarget::Pxe => BootDevice::Pxe,
        BootTarget::None => BootDevice::NoOverride,
    };
    BootFlags {
        valid: target != BootTarget::None,
        persistent: persistence == BootPersistence::Continuous,
        efi: mode == BootMode::Uefi,
        device,
    }
}
