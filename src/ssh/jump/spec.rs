//! The jump host as the user writes it (`ssh_jump = "user@bastion:port"`, `--ssh-jump`), parsed
//! and checked before anything is created, and written back the way OpenSSH's `ProxyJump`
//! reads it.

use std::fmt;

/// `[user@]host[:port]`; an IPv6 address in brackets (`[2001:db8::1]:2222`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    /// Login user on the bastion; `None`: the node's login user.
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
}

impl JumpHost {
    /// Parses `[user@]host[:port]`. `Err` says what is wrong, for a message that names where the
    /// value came from.
    pub fn parse(s: &str) -> Result<JumpHost, String> {
        let s = s.trim();
        let shape = "expected [user@]host[:port], like admin@bastion.example.org:2222";
        if s.is_empty() {
            return Err(format!("is empty; {shape}"));
        }
        if s.contains(',') {
            return Err(format!(
                "'{s}' names several jump hosts; one is supported ({shape})"
            ));
        }
        if s.contains("://") || s.contains('/') || s.chars().any(char::is_whitespace) {
            return Err(format!("'{s}' is not a host; {shape}"));
        }
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) => {
                if u.is_empty() || u.contains(':') || u.contains('@') {
                    return Err(format!("'{s}' has an invalid user; {shape}"));
                }
                (Some(u.to_string()), r)
            }
            None => (None, s),
        };
        let port_of = |p: &str| -> Result<u16, String> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("'{s}': port '{p}' is not 1-65535")),
            }
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("'{s}': unclosed '['; {shape}"))?;
            let port = match after {
                "" => 22,
                p => port_of(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("'{s}': expected ':port' after ']'"))?,
                )?,
            };
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("'{s}': '{addr}' is not an IPv6 address"));
            }
            (addr.to_string(), port)
        } else if rest.matches(':').count() > 1 {
            return Err(format!(
                "'{s}': an IPv6 address goes in brackets, like [2001:db8::1]:22"
            ));
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h.to_string(), port_of(p)?),
                None => (rest.to_string(), 22),
            }
        };
        if host.is_empty() || host.starts_with('-') {
            return Err(format!("'{s}' has no valid host; {shape}"));
        }
        Ok(JumpHost { user, host, port })
    }

    /// `host:port`, `[v6]:port`: where to connect.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The value of OpenSSH's `ProxyJump` (and `ssh -J`), with `user` when none is given.
    pub fn proxy_jump(&self, user: &str) -> String {
        let user = self.user.as_deref().unwrap_or(user);
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 22 {
            format!("{user}@{host}")
        } else {
            format!("{user}@{host}:{}", self.port)
        }
    }
}

impl fmt::Display for JumpHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        f.write_str(&self.address())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_host_port_and_ipv6() {
        let j = JumpHost::parse("admin@bastion.example.org:2222").unwrap();
        assert_eq!(j.user.as_deref(), Some("admin"));
        assert_eq!((j.host.as_str(), j.port), ("bastion.example.org", 2222));
        assert_eq!(j.to_string(), "admin@bastion.example.org:2222");
        let j = JumpHost::parse("bastion").unwrap();
        assert_eq!((j.user, j.port), (None, 22));
        let j = JumpHost::parse("u@[2001:db8::1]:2200").unwrap();
        assert_eq!(j.host, "2001:db8::1");
        assert_eq!(j.proxy_jump("x"), "u@[2001:db8::1]:2200");
        assert_eq!(JumpHost::parse("h").unwrap().proxy_jump("root"), "root@h");
    }

    #[test]
    fn refuses_what_is_not_one_host() {
        for bad in [
            "",
            "a,b",
            "ssh://h",
            "h:0",
            "h:70000",
            "h:x",
            "@h",
            "2001:db8::1",
            "[::1",
            "[nothost]:22",
            "u@",
            "h p",
            "-oProxyCommand=x",
        ] {
            assert!(JumpHost::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
