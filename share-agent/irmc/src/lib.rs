//! iRMC client: SCCI XML over HTTP(S), the Redfish subset and IPMI 2.0 over LAN
//! (RMCP+) a FUJITSU iRMC (S4, S5, S6) needs for virtual-media provisioning.
//!
//! # Layout
//! - [`wire`]: every wire format, one file each under `wire/` (SCCI
//!   `<CMDSEQ>`/`<Status>`, the virtual drives' ConfigSpace items, the
//!   settings dump, `/report.xml`, Redfish JSON). Pure functions; golden
//!   tests in `tests/it/wire.rs`.
//! - `config`: [`BmcConfig`] (Ironic `driver_info` names), [`Secret`],
//!   retry and polling policies.
//! - `client`: [`IrmcClient`], the async HTTP client (auth, TLS, retries); power state
//!   and the boot device go over Redfish or IPMI per [`Transport`] (`irmc_transport`).
//! - [`ipmi`]: IPMI 2.0 over LAN: `ipmi/wire.rs` holds every packet format and the
//!   RMCP+ cryptography (golden tests on ipmitool captures in `tests/it/ipmi.rs`),
//!   `ipmi/session.rs` the UDP conversation ([`IpmiClient`]).
//! - [`capability`]: the one capability table (generation and firmware thresholds as
//!   data: virtual floppy, Redfish, IPMI by default), the report's generation and
//!   firmware with the `Root@OS`/`Summary/Created/OS` fallback, the S4-or-later check.
//! - `client/checks.rs`: [`IrmcClient::validate`] (generation, licence key, the check
//!   `manage` runs); `client/redfish_media.rs`: Redfish virtual media (DMTF
//!   `InsertMedia`/`EjectMedia`, drives found by following links from `/redfish/v1`).
//! - `digest`: RFC 7616 Digest authentication (MD5, SHA-256, `qop=auth`).
//! - `error`: [`IrmcError`], the crate's one error type.
//!
//! # Invariants
//! - This crate knows nothing about gRPC, the coordinator, or shares: it
//!   speaks to one BMC per [`IrmcClient`].
//! - Passwords live in [`Secret`] (Debug/Display `******`). They reach the
//!   wire only inside request bodies/headers and never appear in logs, errors
//!   or Debug output. Reply bodies never appear in errors either, since an
//!   iRMC may echo the request (password included) into its reply.
//! - Every value placed in XML is escaped.
//! - Nothing panics on BMC input: every reply is parsed fallibly.
//! - Redirects are never followed (a 3xx is [`IrmcError::Redirect`]).
//! - TLS verification is on by default ([`TlsVerify::System`]).
//!
//! # Retry rule (transient faults only)
//! A request is resent, with exponential backoff and jitter
//! ([`RetryPolicy`]), only when resending cannot do harm:
//! - connect errors (TCP/TLS never established, so the BMC saw nothing):
//!   every request;
//! - HTTP 503 (the BMC declined the request): every request;
//! - timeouts, other 5xx and dropped connections (the BMC may have acted):
//!   only idempotent requests: GETs, the Redfish boot-override PATCH, and SCCI
//!   sequences made only of ConfigSpace, Connect*Image, PowerOn/PowerOff
//!   commands. A power cycle, reset, NMI, graceful shutdown or Redfish reset
//!   is never resent after it may have reached the BMC.
//! - SCCI status 5 ("Input/Output error": the iRMC is still busy with an earlier power
//!   action or media connect): every command, after a growing pause, until the
//!   [`BusyPolicy`] budget (30 s) is spent; then [`IrmcError::Busy`].
//! - never: TLS handshake failures (an untrusted certificate stays
//!   untrusted), 401 (after authenticating), other 4xx, 3xx, SCCI error
//!   values, malformed replies.
//!
//! # Cost per operation (requests on the wire, Basic auth or warm Digest nonce)
//! - `attach`: 2 POSTs (settings, then connect); the reference client also
//!   slept 10 s.
//! - `detach`: 1 GET (settings pre-check) + 1 POST, or just the GET when the
//!   drive was never configured.
//! - `power`: 1 POST (the reference slept 3 s after it).
//! - `power_state`: 1 GET; `set_boot_override`: 1 PATCH (+1 GET and a second
//!   PATCH only when the BMC insists on `If-Match`); `redfish_reset`: 1 POST.
//! - Digest adds one 401 round trip on the first request of a client (and
//!   whenever the BMC marks the nonce stale); later requests reuse the nonce.
//! - Over IPMI (`irmc_transport=ipmi`), `power_state` and `set_boot_override` are one
//!   RMCP+ session each: 7 request/reply datagram pairs, ~0.3-0.4 ms of CPU for client
//!   and simulator together in a debug build (see [`ipmi`]).
//!
//! # ConfigSpace OE table for virtual media
//! | item | CD | FD | HD |
//! | --- | --- | --- | --- |
//! | remote media enabled | 1A80 | 1A80 | 1A80 |
//! | image server | 1A60 | 1A50 | 1A40 |
//! | user name | 1A61 | 1A51 | 1A41 |
//! | password (`Encrypted="0"`) | 1A62 | 1A52 | 1A42 |
//! | user domain | 1A63 | 1A53 | 1A43 |
//! | share type (0 NFS, 1 CIFS) | 1A64 | 1A54 | 1A44 |
//! | share name | 1A65 | 1A55 | 1A45 |
//! | image name | 1A66 | 1A56 | 1A46 |
//! | attach mode (not written) | 1A67 | 1A57 | 1A47 |
//! | number of emulated drives | 1A68 | 1A58 | 1A48 |
//!
//! The CD and FD items are those the reference client (python-scciclient)
//! writes. The HD items are not documented in any public source we found
//! (the reference client defines `ConnectRemoteHdImage`, 0x0253, but no HD
//! ConfigSpace items); the 1A4x range above is chosen **by analogy** with
//! 1A5x/1A6x and must be confirmed on real hardware. `irmc-sim` follows this
//! table.

pub mod capability;
mod client;
mod config;
mod digest;
mod error;
pub mod ipmi;
pub mod wire;

pub use capability::{Capabilities, MediaPath};
pub use client::{IrmcClient, SCCI_BUSY};
pub use config::{
    AuthMethod, BmcConfig, BusyPolicy, DEFAULT_TIMEOUT, PollPolicy, RetryPolicy, Scheme, Secret,
    TlsVerify, Transport,
};
pub use error::{Ctx, IrmcError, scrub_bmc_text};
pub use ipmi::{IpmiClient, IpmiSettings};
pub use wire::{
    BootMode, BootPersistence, BootTarget, MediaKind, MediaLocation, MediaView, Opcode,
    PowerAction, PowerState, Report, ResetType, ScciCommand, ScciData, Settings, ShareType,
    SystemInfo,
};
