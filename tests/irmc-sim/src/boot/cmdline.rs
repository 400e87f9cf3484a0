//! Kernel command line extraction from boot loader configuration, and the
//! ironic-python-agent parameter rules.
//!
//! - isolinux: the `APPEND` line of the `DEFAULT` label (or of the first label, or a global
//!   `APPEND`), keywords case-insensitive, as syslinux reads them.
//! - GRUB: the `linux`/`linuxefi` line of the default `menuentry` (`set default=N`, else the
//!   first entry), without the kernel path.
//! - Parameters: whitespace-separated `key=value` tokens, tokens without `=` ignored; the
//!   virtual-media `parameters.txt` is merged over the command line only when the command
//!   line itself says `boot_method=vmedia` (ironic-python-agent `utils.get_agent_params`),
//!   and the floppy values win.

use std::collections::BTreeMap;

/// Ordered `key=value` parameters (later keys overwrite earlier ones, as in a dict).
pub type Params = BTreeMap<String, String>;

/// The command line from an isolinux.cfg, or `None` when it has no usable APPEND.
pub fn isolinux_append(cfg: &str) -> Option<String> {
    let mut default: Option<String> = None;
    let mut global_append: Option<String> = None;
    // (label, append) in file order.
    let mut labels: Vec<(String, Option<String>)> = Vec::new();
    for line in cfg.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (kw, rest) = match line.split_once(char::is_whitespace) {
            Some((k, r)) => (k, r.trim()),
            None => (line, ""),
        };
        match kw.to_ascii_lowercase().as_str() {
            "default" => default = Some(rest.to_string()),
            "label" => labels.push((rest.to_string(), None)),
            "append" => match labels.last_mut() {
                Some((_, a)) => *a = Some(rest.to_string()),
                None => global_append = Some(rest.to_string()),
            },
            _ => {}
        }
    }
    let chosen = default
        .as_deref()
        .and_then(|d| labels.iter().find(|(l, _)| l == d))
        .or_else(|| labels.first());
    match chosen {
        Some((_, Some(a))) => Some(a.clone()),
        // A label without its own APPEND inherits the global one.
        _ => global_append,
    }
}

/// The command line from a grub.cfg, or `None` when no `linux` line is found.
pub fn grub_linux_args(cfg: &str) -> Option<String> {
    let mut default_idx: usize = 0;
    // Per menuentry (in order): its linux arguments.
    let mut entries: Vec<Option<String>> = Vec::new();
    let mut outside: Option<String> = None;
    let mut depth = 0usize;
    for line in cfg.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(v) = line.strip_prefix("set default=") {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
            if let Ok(n) = v.parse::<usize>() {
                default_idx = n;
            }
        }
        if line.starts_with("menuentry ") || line.starts_with("menuentry\t") {
            entries.push(None);
            depth += line.matches('{').count();
            depth = depth.saturating_sub(line.matches('}').count());
            continue;
        }
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if matches!(first, "linux" | "linuxefi" | "linux16") {
            let _kernel = words.next();
            let args: Vec<String> = words.map(unquote).collect();
            let args = args.join(" ");
            match (depth > 0, entries.last_mut()) {
                (true, Some(slot)) if slot.is_none() => *slot = Some(args),
                (false, _) if outside.is_none() => outside = Some(args),
                _ => {}
            }
        }
        depth += line.matches('{').count();
        depth = depth.saturating_sub(line.matches('}').count());
    }
    entries
        .get(default_idx)
        .cloned()
        .flatten()
        .or_else(|| entries.iter().flatten().next().cloned())
        .or(outside)
}

fn unquote(w: &str) -> String {
    w.chars().filter(|&c| c != '"' && c != '\'').collect()
}

/// Split a command line (or parameters.txt) the way ironic-python-agent does.
pub fn parse_params(text: &str) -> Params {
    text.split_whitespace()
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The parameters the ramdisk runs with: the command line, with `parameters.txt` merged
/// over it iff the command line carries `boot_method=vmedia`. Returns the parameters and
/// whether the floppy was merged.
pub fn agent_params(cmdline: &str, vmedia: Option<&str>) -> (Params, bool) {
    let mut params = parse_params(cmdline);
    let wants_vmedia = params.get("boot_method").map(String::as_str) == Some("vmedia");
    match (wants_vmedia, vmedia) {
        (true, Some(text)) => {
            params.extend(parse_params(text));
            (params, true)
        }
        _ => (params, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolinux_default_label() {
        let cfg = "SERIAL 0 115200\nDEFAULT deploy\nlabel other\n  append a=1\nLABEL deploy\n  KERNEL /vmlinuz\n  APPEND initrd=/initrd boot_method=vmedia --\n";
        assert_eq!(
            isolinux_append(cfg).as_deref(),
            Some("initrd=/initrd boot_method=vmedia --")
        );
    }

    #[test]
    fn isolinux_first_label_and_global() {
        assert_eq!(
            isolinux_append("label a\n append x=1\nlabel b\n append y=2").as_deref(),
            Some("x=1")
        );
        assert_eq!(
            isolinux_append("APPEND g=1\nLABEL a\n KERNEL k").as_deref(),
            Some("g=1")
        );
        assert_eq!(isolinux_append("DEFAULT a\n"), None);
    }

    #[test]
    fn grub_default_entry() {
        let cfg = "set default=\"1\"\nmenuentry \"a\" {\n  linux /vmlinuz a=1\n}\nmenuentry 'b' {\n  linuxefi /vmlinuz b=2 'c=3'\n  initrd /initrd\n}\n";
        assert_eq!(grub_linux_args(cfg).as_deref(), Some("b=2 c=3"));
        let cfg = "menuentry x {\n linux /k q=1\n}\n";
        assert_eq!(grub_linux_args(cfg).as_deref(), Some("q=1"));
        assert_eq!(grub_linux_args("set timeout=5\n"), None);
    }

    #[test]
    fn merge_only_with_boot_method_vmedia() {
        let floppy = "ipa-api-url=http://127.0.0.1:6385\nipa-agent-token=abc\nboot_method=vmedia\n";
        let (p, merged) = agent_params("initrd=/initrd quiet", Some(floppy));
        assert!(!merged);
        assert!(!p.contains_key("ipa-api-url"));
        let (p, merged) = agent_params("boot_method=vmedia ipa-agent-token=old x", Some(floppy));
        assert!(merged);
        assert_eq!(p["ipa-agent-token"], "abc");
        assert_eq!(p["ipa-api-url"], "http://127.0.0.1:6385");
        assert!(!p.contains_key("x"));
    }
}
