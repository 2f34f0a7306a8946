//! Tag values on every provider's terms: one reversible encoding with a small table of each
//! provider's rules (which characters a value may hold, how long it may be, whether it must
//! start and end with a letter or digit). Drivers encode `NodeSpec::tags` values with their
//! rules on create and decode them back when they read a node, so the records the reaper needs
//! (owner, CI job, expiry, labels) survive any provider's tag syntax. Keys are never encoded:
//! ours are fixed, users' are checked when parsed ([`check_key`]).
//!
//! The encoding: a byte the provider does not take (and `_`, the escape) becomes `_HH` (two
//! uppercase hex digits). Where a value must start with a letter or digit (Hetzner), a value
//! whose encoding would start with `_` gets a leading `z`, and a raw leading `z` is escaped, so
//! decoding stays unambiguous. A value too long once encoded is cut (by characters) to fit,
//! with a warning: round trips hold for every value within the limit.

/// One provider's rules for tag values.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The provider, for warnings.
    pub provider: &'static str,
    /// A character a value may hold as is; `None`: any character (no escaping at all).
    pub safe: Option<fn(char) -> bool>,
    /// The longest value, counted in characters, for a given key length.
    pub max_len: fn(usize) -> usize,
    /// Values must start and end with a letter or digit.
    pub alnum_edges: bool,
}

fn do_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == ':'
}

fn hetzner_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.'
}

/// DigitalOcean: a tag is one `key:value` string of letters, digits, `_ - :`, 255 at most.
pub const DIGITALOCEAN: Rules = Rules {
    provider: "digitalocean",
    safe: Some(do_safe),
    max_len: |key| 255usize.saturating_sub(key + 1),
    alnum_edges: false,
};

/// Hetzner: label values of letters, digits, `- _ .`, 63 at most, alphanumeric at both ends.
pub const HETZNER: Rules = Rules {
    provider: "hetzner",
    safe: Some(hetzner_safe),
    max_len: |_| 63,
    alnum_edges: true,
};

/// EC2: any Unicode value up to 256 characters (and 50 tags per resource).
pub const EC2: Rules = Rules {
    provider: "ec2",
    safe: None,
    max_len: |_| 256,
    alnum_edges: false,
};

/// OpenStack: Nova metadata values up to 255 characters.
pub const OPENSTACK: Rules = Rules {
    provider: "openstack",
    safe: None,
    max_len: |_| 255,
    alnum_edges: false,
};

/// EC2's limit on tags per resource (user tags; `aws:` ones do not count).
pub const EC2_MAX_TAGS: usize = 50;
/// Nova's default `metadata_items` quota: metadata items per server.
pub const OPENSTACK_MAX_TAGS: usize = 128;

/// Checks, before anything is created, that `count` tags fit on one node of `provider`
/// (`max`: [`crate::provider::Provider::max_tags`]). `Err` is the one-line reason.
/// `labels`: from `--label`; `own`: provision's and the driver's.
pub fn check_count(
    provider: &str,
    labels: usize,
    own: usize,
    max: Option<usize>,
) -> std::result::Result<(), String> {
    match max {
        Some(max) if labels + own > max => Err(format!(
            "{provider}: {labels} --label and {own} tags of provision's own make {} tags per node, over {provider}'s limit of {max}: drop {} --label",
            labels + own,
            labels + own - max
        )),
        _ => Ok(()),
    }
}

fn escape(rules: &Rules, value: &str) -> String {
    let Some(safe) = rules.safe else {
        return value.to_string();
    };
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        let lead_z = rules.alnum_edges && i == 0 && c == 'z';
        let last = i + 1 == value.chars().count();
        let bad_edge = rules.alnum_edges && (i == 0 || last) && !c.is_ascii_alphanumeric();
        if c != '_' && safe(c) && !lead_z && !bad_edge {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("_{b:02X}"));
            }
        }
    }
    if rules.alnum_edges && out.starts_with('_') {
        out.insert(0, 'z');
    }
    out
}

/// `value` as `rules`' provider takes it under `key`: escaped, then cut to fit (warned).
pub fn encode(rules: &Rules, key: &str, value: &str) -> String {
    let max = (rules.max_len)(key.chars().count());
    let mut chars: Vec<char> = value.chars().collect();
    loop {
        let raw: String = chars.iter().collect();
        let enc = escape(rules, &raw);
        if enc.chars().count() <= max {
            if chars.len() < value.chars().count() {
                crate::output::warn(&format!(
                    "{}: tag '{key}' cut to '{raw}' to fit {max} characters",
                    rules.provider
                ));
            }
            return enc;
        }
        chars.pop();
    }
}

/// The value [`encode`] stored, back as it was (a value that is not an encoding stays as is).
pub fn decode(rules: &Rules, value: &str) -> String {
    if rules.safe.is_none() {
        return value.to_string();
    }
    let v = if rules.alnum_edges && value.starts_with("z_") {
        &value[1..]
    } else {
        value
    };
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
        if bytes[i] == b'_' && i + 2 < bytes.len() && hex(bytes[i + 1]) && hex(bytes[i + 2]) {
            if let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| value.to_string())
}

/// A label key every provider takes as is: 1-63 letters, digits, `_` or `-`, starting and
/// ending with a letter or digit. `Err` is the one-line reason.
pub fn check_key(key: &str) -> std::result::Result<(), String> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if key.len() <= 63
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && edge(key.chars().next())
        && edge(key.chars().last())
    {
        Ok(())
    } else {
        Err(format!(
            "label key '{key}' must be 1-63 letters, digits, _ or -, starting and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ODD: &[&str] = &[
        "",
        "1",
        "alice@build-7.example.com",
        "gitlab.com/group/sub/project",
        "https://ci.example.com/job/x/42/",
        "_lead_and_trail_",
        "-dash-",
        ".dot.",
        "zebra",
        "z_",
        "z_41",
        "naïve ünïcode ☃",
        "a:b:c",
        "100%_sure",
    ];

    #[test]
    fn round_trips_odd_values_on_every_provider() {
        for rules in [DIGITALOCEAN, HETZNER, EC2, OPENSTACK] {
            for v in ODD {
                let e = encode(&rules, "provision-owner", v);
                assert_eq!(decode(&rules, &e), *v, "{} {v:?} -> {e:?}", rules.provider);
                if let Some(safe) = rules.safe {
                    assert!(
                        e.chars().all(|c| c == '_' || safe(c)),
                        "{} {v:?} -> {e:?}",
                        rules.provider
                    );
                }
                if rules.alnum_edges && !e.is_empty() {
                    assert!(e.starts_with(|c: char| c.is_ascii_alphanumeric()), "{e}");
                    assert!(e.ends_with(|c: char| c.is_ascii_alphanumeric()), "{e}");
                }
            }
        }
    }

    #[test]
    fn values_at_the_limits_fit_and_longer_ones_are_cut() {
        // Hetzner: exactly 63 plain characters round-trip; 64 are cut to 63
        let v63 = "a".repeat(63);
        assert_eq!(encode(&HETZNER, "k", &v63), v63);
        assert_eq!(encode(&HETZNER, "k", &"a".repeat(64)), v63);
        // an escaped character costs three: the cut never leaves half an escape
        let e = encode(&HETZNER, "k", &format!("{}@", "a".repeat(61)));
        assert!(e.len() <= 63 && decode(&HETZNER, &e).chars().all(|c| c == 'a'));
        // DigitalOcean: key, ':' and value within 255
        let key = "provision-owner";
        let e = encode(&DIGITALOCEAN, key, &"b".repeat(300));
        assert_eq!(key.len() + 1 + e.len(), 255);
        // EC2 256, OpenStack 255 characters (not bytes)
        assert_eq!(encode(&EC2, "k", &"é".repeat(256)).chars().count(), 256);
        assert_eq!(
            encode(&OPENSTACK, "k", &"é".repeat(300)).chars().count(),
            255
        );
    }

    #[test]
    fn plain_values_and_ids_stay_readable() {
        for rules in [DIGITALOCEAN, HETZNER] {
            assert_eq!(encode(&rules, "k", "1764555600"), "1764555600");
            assert_eq!(encode(&rules, "k", "0123abcdef"), "0123abcdef");
        }
        assert_eq!(encode(&HETZNER, "k", "alice@h"), "alice_40h");
        assert_eq!(decode(&HETZNER, "plain"), "plain");
    }

    #[test]
    fn tag_counts_over_the_limit_are_refused() {
        assert!(check_count("ec2", 42, 8, Some(50)).is_ok());
        assert!(check_count("digitalocean", 500, 8, None).is_ok());
        let e = check_count("ec2", 45, 8, Some(50)).unwrap_err();
        assert!(
            e.contains("45 --label")
                && e.contains("53 tags")
                && e.contains("limit of 50")
                && e.contains("drop 3"),
            "{e}"
        );
    }

    #[test]
    fn label_keys_are_checked() {
        assert!(check_key("ci_job").is_ok());
        assert!(check_key(&"k".repeat(63)).is_ok());
        for bad in ["", "-x", "x-", "a b", "a.b", "a:b", &"k".repeat(64)] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
