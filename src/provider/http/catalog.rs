//! Looking up images, sizes and locations by name, the same way for every cloud driver, so a
//! wrong name is a config error (exit 2) with near matches before anything is created.
//!
//! The image rule is the original's: an exact name (or slug, or id) wins; otherwise the newest,
//! by natural sort, of the names that start with what was given (`ubuntu` → `ubuntu-24-04-x64`).

use crate::error::Error;
use std::cmp::Ordering;

/// What a driver will send for a `NodeSpec`'s image, size and location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The image reference the API takes (slug, name or id).
    pub image: String,
    /// The image's name as the user knows it (for messages and records).
    pub image_name: String,
    pub size: String,
    pub location: String,
}

/// An image the provider offers: the reference to send and the names it is known by.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub names: Vec<String>,
}

/// Natural order: digit runs compare as numbers, so `ubuntu-9` < `ubuntu-24`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let da = trim_zeros(&a[..na]);
                let db = trim_zeros(&b[..nb]);
                let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|c| **c == b'0').count();
    &d[n.min(d.len().saturating_sub(1))..]
}

/// The image for `want`: an exact name/id wins, else the newest (natural sort) name starting
/// with `want`. Returns the candidate and the name that matched.
pub fn pick_image<'a>(want: &str, images: &'a [Candidate]) -> Option<(&'a Candidate, &'a str)> {
    for c in images {
        if c.id == want {
            return Some((c, c.names.first().map(String::as_str).unwrap_or(&c.id)));
        }
        if let Some(n) = c.names.iter().find(|n| *n == want) {
            return Some((c, n));
        }
    }
    images
        .iter()
        .flat_map(|c| c.names.iter().map(move |n| (c, n.as_str())))
        .filter(|(_, n)| !want.is_empty() && n.starts_with(want))
        .max_by(|(_, a), (_, b)| natural_cmp(a, b))
}

/// Up to `n` names close to `want`: containing it, sharing its first word, or a few edits away.
pub fn near_matches<'a>(
    want: &str,
    names: impl IntoIterator<Item = &'a str>,
    n: usize,
) -> Vec<String> {
    let w = want.to_ascii_lowercase();
    let first = |s: &str| {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or("")
            .to_string()
    };
    let wfirst = first(&w);
    let mut scored: Vec<(usize, String)> = names
        .into_iter()
        .filter_map(|name| {
            let l = name.to_ascii_lowercase();
            let d = strsim::levenshtein(&w, &l);
            let score = if l.contains(&w) || (w.contains(&l) && !l.is_empty()) {
                0
            } else if d <= (w.len() / 3).max(2) {
                d
            } else if !wfirst.is_empty() && first(&l) == wfirst {
                10 + d
            } else {
                return None;
            };
            Some((score, name.to_string()))
        })
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| natural_cmp(&b.1, &a.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(n).map(|(_, s)| s).collect()
}

/// The config error for a name the provider does not offer, with near matches.
pub fn not_found<'a>(
    provider: &str,
    what: &str,
    flag: &str,
    want: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Error {
    if want.is_empty() {
        // nothing given (no flag, no config): say which flag, with a few real values
        let deploy_flag = match flag {
            "--images" => "-i",
            "--sizes" => "-s",
            _ => "-l",
        };
        let some: Vec<&str> = names.into_iter().take(3).collect();
        return Error::config(format!(
            "{deploy_flag} is required for {provider} (or `{}` in provision.toml); e.g. {} \
             (list-nodes -p {provider} {flag} lists them)",
            match deploy_flag {
                "-i" => "image",
                "-s" => "size",
                _ => "location",
            },
            some.join(", ")
        ));
    }
    let near = near_matches(want, names, 5);
    let hint = if near.is_empty() {
        String::new()
    } else {
        format!("; did you mean: {}?", near.join(", "))
    };
    Error::config(format!(
        "{provider}: no {what} '{want}'{hint} (list-nodes -p {provider} {flag} lists them)"
    ))
}

/// What a driver calls its sizes and locations, for messages ("size"/"region" on
/// DigitalOcean, "server type"/"location" on Hetzner).
pub struct Labels {
    pub size: &'static str,
    pub location: &'static str,
}

/// Checks image, size and location against the provider's catalogs before anything is
/// created: a wrong one is a config error (exit 2) with near matches. The image follows the
/// prefix rule of [`pick_image`]; sizes and locations must match exactly.
pub fn resolve(
    provider: &str,
    labels: Labels,
    images: &[Candidate],
    sizes: &[(String, String)],
    locations: &[(String, String)],
    want: (&str, &str, &str),
) -> crate::error::Result<Resolved> {
    let (image, size, location) = want;
    let (img, matched) = pick_image(image, images).ok_or_else(|| {
        not_found(
            provider,
            "image",
            "--images",
            image,
            images
                .iter()
                .flat_map(|c| c.names.iter().map(String::as_str)),
        )
    })?;
    if !sizes.iter().any(|(s, _)| s == size) {
        return Err(not_found(
            provider,
            labels.size,
            "--sizes",
            size,
            sizes.iter().map(|s| s.0.as_str()),
        ));
    }
    if !locations.iter().any(|(s, _)| s == location) {
        return Err(not_found(
            provider,
            labels.location,
            "--locations",
            location,
            locations.iter().map(|s| s.0.as_str()),
        ));
    }
    Ok(Resolved {
        image: img.id.clone(),
        image_name: matched.to_string(),
        size: size.to_string(),
        location: location.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, names: &[&str]) -> Candidate {
        Candidate {
            id: id.into(),
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("ubuntu-9-04", "ubuntu-24-04"), Ordering::Less);
        assert_eq!(
            natural_cmp("ubuntu-24-10", "ubuntu-24-04"),
            Ordering::Greater
        );
        assert_eq!(natural_cmp("a007", "a7"), Ordering::Equal);
        assert_eq!(natural_cmp("debian-12", "debian-12-x64"), Ordering::Less);
    }

    #[test]
    fn exact_wins_then_newest_prefix() {
        let imgs = vec![
            c("1", &["ubuntu-9-04-x64"]),
            c("2", &["ubuntu-24-04-x64"]),
            c("3", &["ubuntu-22-04-x64"]),
            c("4", &["ubuntu"]),
        ];
        assert_eq!(pick_image("ubuntu", &imgs).unwrap().0.id, "4");
        assert_eq!(pick_image("ubuntu-", &imgs).unwrap().0.id, "2");
        assert_eq!(
            pick_image("ubuntu-22", &imgs).unwrap().1,
            "ubuntu-22-04-x64"
        );
        assert_eq!(pick_image("3", &imgs).unwrap().0.id, "3");
        assert!(pick_image("fedora", &imgs).is_none());
    }

    #[test]
    fn nothing_given_names_the_flag() {
        let e = not_found(
            "digitalocean",
            "image",
            "--images",
            "",
            ["ubuntu-24-04-x64", "debian-12-x64"],
        )
        .to_string();
        assert!(e.starts_with("-i is required for digitalocean"), "{e}");
        assert!(e.contains("e.g. ubuntu-24-04-x64, debian-12-x64"), "{e}");
        assert!(!e.contains("no image ''"), "{e}");
    }

    #[test]
    fn near() {
        let names = [
            "ubuntu-24-04-x64",
            "ubuntu-22-04-x64",
            "debian-12-x64",
            "fedora-40-x64",
        ];
        let n = near_matches("ubunty-24-04-x64", names, 5);
        assert_eq!(n[0], "ubuntu-24-04-x64");
        assert!(!n.contains(&"fedora-40-x64".to_string()));
        assert!(near_matches("zzz", names, 5).is_empty());
    }
}
