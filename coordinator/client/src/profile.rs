//! Named profiles: which coordinator to reach and with which credentials, kept in one
//! TOML file so an operator switches fleets with `--profile NAME` (as `clouds.yaml` does
//! for the openstack CLI).
//!
//! ```toml
//! default_profile = "lab"            # optional
//!
//! [profiles.lab]
//! coordinator = "https://a:50051,https://b:50051"   # or a list of addresses
//! ca_file = "lab/ca.pem"             # relative paths: against this file's directory
//! token_file = "lab/admin.token"
//! ```
//!
//! The file is `$VMEDIA_CONFIG`, else `$XDG_CONFIG_HOME/vmedia/config.toml`, else
//! `~/.config/vmedia/config.toml`. The profile is the one named (flag or
//! `VMEDIA_PROFILE`), else `default_profile`, else none. Explicit settings win over the
//! profile, one by one: the coordinator given by flag or `VMEDIA_COORDINATOR`,
//! `VMEDIA_CA_FILE`, and `VMEDIA_TOKEN_FILE` or `VMEDIA_TOKEN`.
//!
//! [`resolve_with`] takes the environment as a function, so the rules are tested without
//! touching the process environment.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

use crate::conn::{Access, read_token};

/// The coordinator used when nothing names one.
pub const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:50051";

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub default_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// One profile; every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub coordinator: Option<Addresses>,
    pub ca_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
}

/// `"a,b"` or `["a", "b"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Addresses {
    One(String),
    Many(Vec<String>),
}

impl Addresses {
    /// The comma-separated form [`crate::conn::connect`] takes.
    pub fn joined(&self) -> String {
        match self {
            Self::One(s) => s.clone(),
            Self::Many(v) => v.join(","),
        }
    }
}

/// Where to go and how: the result of [`resolve`].
#[derive(Debug, Clone)]
pub struct Target {
    /// One address or a comma-separated replica list.
    pub coordinator: String,
    pub access: Access,
    /// The profile used, if any, and the file it came from.
    pub profile: Option<(String, PathBuf)>,
    /// Things the operator should fix but that do not stop the command (one line each).
    pub warnings: Vec<String>,
}

/// What the command line said (flags, or their environment variables as clap reads them).
#[derive(Debug, Clone, Default)]
pub struct Explicit {
    /// `--profile` / `VMEDIA_PROFILE`.
    pub profile: Option<String>,
    /// `--coordinator` / `VMEDIA_COORDINATOR`.
    pub coordinator: Option<String>,
}

/// [`resolve_with`] on the process environment.
pub fn resolve(explicit: &Explicit) -> Result<Target> {
    resolve_with(explicit, &|k| std::env::var_os(k))
}

/// The config file to read: `VMEDIA_CONFIG`, else under `XDG_CONFIG_HOME`, else under
/// `HOME/.config`. `None` when none of those variables is set.
pub fn config_path(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(p) = var("VMEDIA_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = match var("XDG_CONFIG_HOME") {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(var("HOME")?).join(".config"),
    };
    Some(base.join("vmedia").join("config.toml"))
}

/// Reads and parses a config file; errors are one line naming the file.
pub fn load(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("reading the config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(" (line {})", line_of(&text, s.start)))
            .unwrap_or_default();
        anyhow!(
            "the config file {}{at}: {}",
            path.display(),
            e.message().trim()
        )
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |t| t.bytes().filter(|b| *b == b'\n').count())
        + 1
}

/// A flag's value, unless empty.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Works out coordinator and access from the flags, the environment and the profile.
pub fn resolve_with(explicit: &Explicit, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Target> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let path = config_path(env);
    let explicit_file = var("VMEDIA_CONFIG").is_some();
    // The file is optional unless VMEDIA_CONFIG names it or a profile is asked for.
    let file = match &path {
        Some(p) if explicit_file || p.exists() || given(&explicit.profile).is_some() => {
            if !p.exists() {
                match given(&explicit.profile) {
                    Some(name) if !explicit_file => bail!(
                        "profile {name:?} requested but there is no config file {}",
                        p.display()
                    ),
                    _ => bail!(
                        "the config file {} (VMEDIA_CONFIG) does not exist",
                        p.display()
                    ),
                }
            }
            Some((p.clone(), load(p)?))
        }
        Some(_) => None,
        None => {
            if let Some(name) = given(&explicit.profile) {
                bail!(
                    "profile {name:?} requested but no config file is known (set VMEDIA_CONFIG, XDG_CONFIG_HOME or HOME)"
                );
            }
            None
        }
    };

    let mut warnings = Vec::new();
    let mut profile = None;
    let mut chosen: Option<(String, PathBuf)> = None;
    if let Some((p, cfg)) = &file {
        let name = given(&explicit.profile)
            .map(str::to_owned)
            .or_else(|| cfg.default_profile.clone());
        if let Some(name) = name {
            let Some(found) = cfg.profiles.get(&name) else {
                let have: Vec<&str> = cfg.profiles.keys().map(String::as_str).collect();
                let have = if have.is_empty() {
                    "none".to_owned()
                } else {
                    have.join(", ")
                };
                bail!(
                    "unknown profile {name:?} in {} (profiles: {have})",
                    p.display()
                );
            };
            profile = Some(found.clone());
            chosen = Some((name, p.clone()));
        }
    }
    let base = chosen
        .as_ref()
        .and_then(|(_, p)| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let relative = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };

    let coordinator = given(&explicit.coordinator)
        .map(str::to_owned)
        .or_else(|| {
            profile
                .as_ref()
                .and_then(|p| p.coordinator.as_ref())
                .map(Addresses::joined)
        })
        .unwrap_or_else(|| DEFAULT_COORDINATOR.to_owned());

    let ca_file = var("VMEDIA_CA_FILE").map(PathBuf::from).or_else(|| {
        profile
            .as_ref()
            .and_then(|p| p.ca_file.as_ref())
            .map(relative)
    });

    let token_file = var("VMEDIA_TOKEN_FILE").map(PathBuf::from);
    let token = match (token_file, var("VMEDIA_TOKEN")) {
        (Some(f), _) => Some(token_from(&f, &mut warnings)?),
        (None, Some(t)) => Some(crate::conn::Token::new(t.to_string_lossy().trim())),
        (None, None) => match profile.as_ref().and_then(|p| p.token_file.as_ref()) {
            Some(f) => Some(token_from(&relative(f), &mut warnings)?),
            None => None,
        },
    };

    Ok(Target {
        coordinator,
        access: Access { ca_file, token },
        profile: chosen,
        warnings,
    })
}

fn token_from(path: &Path, warnings: &mut Vec<String>) -> Result<crate::conn::Token> {
    let token = read_token(path)?;
    if let Some(w) = loose_permissions(path) {
        warnings.push(w);
    }
    Ok(token)
}

/// A warning when a secret file can be read by group or others.
#[cfg(unix)]
pub fn loose_permissions(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "the token file {} is readable by group or others (mode {mode:03o}); run chmod 600 on it",
            path.display()
        )
    })
}

/// A warning when a secret file can be read by group or others.
#[cfg(not(unix))]
pub fn loose_permissions(_path: &Path) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Env(HashMap<&'static str, OsString>);

    impl Env {
        fn new(vars: &[(&'static str, &Path)]) -> Self {
            Self(
                vars.iter()
                    .map(|(k, v)| (*k, v.as_os_str().to_owned()))
                    .collect(),
            )
        }
        fn with(mut self, k: &'static str, v: &str) -> Self {
            self.0.insert(k, v.into());
            self
        }
        fn get(&self) -> impl Fn(&str) -> Option<OsString> + '_ {
            |k| self.0.get(k).cloned()
        }
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
    }

    fn lab(dir: &Path) -> PathBuf {
        let cfg = dir.join("xdg/vmedia/config.toml");
        write(
            &cfg,
            "default_profile = \"lab\"\n\
             [profiles.lab]\n\
             coordinator = \"https://a:1,https://b:2\"\n\
             ca_file = \"lab/ca.pem\"\n\
             token_file = \"lab/admin.token\"\n\
             [profiles.prod]\n\
             coordinator = [\"https://p1:1\", \"https://p2:1\"]\n\
             token_file = \"/nonexistent/prod.token\"\n",
            0o644,
        );
        write(&dir.join("xdg/vmedia/lab/admin.token"), "s3cret\n", 0o600);
        cfg
    }

    #[test]
    fn profile_from_xdg_with_relative_paths_and_default() {
        let d = tempfile::tempdir().unwrap();
        lab(d.path());
        let xdg = d.path().join("xdg");
        let env = Env::new(&[("XDG_CONFIG_HOME", &xdg)]);
        let t = resolve_with(&Explicit::default(), &env.get()).unwrap();
        assert_eq!(t.coordinator, "https://a:1,https://b:2");
        assert_eq!(
            t.access.ca_file.as_deref(),
            Some(xdg.join("vmedia/lab/ca.pem").as_path())
        );
        assert_eq!(t.access.token.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(t.profile.as_ref().unwrap().0, "lab");
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn home_fallback_and_lists() {
        let d = tempfile::tempdir().unwrap();
        let cfg = lab(d.path());
        let home = d.path().join("home");
        std::fs::create_dir_all(home.join(".config")).unwrap();
        std::fs::rename(cfg.parent().unwrap(), home.join(".config/vmedia")).unwrap();
        let env = Env::new(&[("HOME", &home)]);
        let explicit = Explicit {
            profile: Some("prod".into()),
            coordinator: None,
        };
        // prod's token file does not exist: the error names it.
        let e = resolve_with(&explicit, &env.get()).unwrap_err();
        assert!(
            format!("{e:#}").contains("/nonexistent/prod.token"),
            "{e:#}"
        );
        // An explicit token wins over the profile's, so it is never read.
        let env = env.with("VMEDIA_TOKEN", "t");
        let t = resolve_with(&explicit, &env.get()).unwrap();
        assert_eq!(t.coordinator, "https://p1:1,https://p2:1");
        assert_eq!(t.access.token.unwrap().expose(), "t");
        assert!(t.access.ca_file.is_none());
    }

    #[test]
    fn flags_and_environment_win() {
        let d = tempfile::tempdir().unwrap();
        let cfg = lab(d.path());
        let other = d.path().join("other.token");
        write(&other, "from-env\n", 0o640);
        let env = Env::new(&[("VMEDIA_CONFIG", &cfg), ("VMEDIA_TOKEN_FILE", &other)])
            .with("VMEDIA_CA_FILE", "/etc/ca.pem");
        let t = resolve_with(
            &Explicit {
                profile: Some("lab".into()),
                coordinator: Some("c:9".into()),
            },
            &env.get(),
        )
        .unwrap();
        assert_eq!(t.coordinator, "c:9");
        assert_eq!(t.access.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(t.access.token.unwrap().expose(), "from-env");
        #[cfg(unix)]
        assert!(
            t.warnings.len() == 1 && t.warnings[0].contains("readable by group or others"),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn no_file_means_defaults_unless_a_profile_is_asked_for() {
        let d = tempfile::tempdir().unwrap();
        let env = Env::new(&[("HOME", d.path())]);
        let t = resolve_with(&Explicit::default(), &env.get()).unwrap();
        assert_eq!(t.coordinator, DEFAULT_COORDINATOR);
        assert!(t.access.token.is_none() && t.profile.is_none());
        let e = resolve_with(
            &Explicit {
                profile: Some("lab".into()),
                coordinator: None,
            },
            &env.get(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no config file"), "{e}");
        let env = Env::new(&[("VMEDIA_CONFIG", &d.path().join("missing.toml"))]);
        let e = resolve_with(&Explicit::default(), &env.get()).unwrap_err();
        assert!(e.to_string().contains("missing.toml"), "{e}");
    }

    #[test]
    fn unknown_profile_and_bad_file_are_one_line_errors() {
        let d = tempfile::tempdir().unwrap();
        let cfg = lab(d.path());
        let env = Env::new(&[("VMEDIA_CONFIG", &cfg)]);
        let e = resolve_with(
            &Explicit {
                profile: Some("nope".into()),
                coordinator: None,
            },
            &env.get(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            format!(
                "unknown profile \"nope\" in {} (profiles: lab, prod)",
                cfg.display()
            )
        );
        write(&cfg, "[profiles.x]\ncoordinatr = \"a\"\n", 0o600);
        let e = format!(
            "{:#}",
            resolve_with(&Explicit::default(), &env.get()).unwrap_err()
        );
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("line 2") && e.contains("coordinatr"), "{e}");
    }
}
