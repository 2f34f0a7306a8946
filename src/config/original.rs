//! Names of the original (Python, 0.9.x) that mean something else here, each turned into one
//! clear line naming today's replacement, before anything is created.

use super::Sourced;
use crate::error::{Error, Result};

/// The original's provider names (its `config.PROVIDERS`) and today's driver for each.
const PROVIDERS: &[(&str, &str, &str)] = &[(
    "rackspace",
    "openstack",
    "Rackspace Cloud Servers run OpenStack: use the openstack driver with your Rackspace \
     identity endpoint",
)];

/// Refuses a provider name that only the original had, naming the replacement and where the
/// name came from (`-p`, or the layer/`__init__.py` line).
pub fn check_provider(provider: &Sourced<String>) -> Result<()> {
    let Some((old, new, why)) = PROVIDERS.iter().find(|(old, ..)| *old == provider.value) else {
        return Ok(());
    };
    let available = if crate::provider::registry::names().contains(new) {
        format!("use -p {new}")
    } else {
        format!(
            "this build has no '{new}' driver yet (known: {})",
            crate::provider::registry::names().join(", ")
        )
    };
    Err(Error::config(format!(
        "{}: provider '{old}' is the original's; {why}; {available}",
        provider.layer
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rackspace_names_openstack_and_its_origin() {
        let e = check_provider(&Sourced {
            value: "rackspace".into(),
            layer: "/s/__init__.py:3".into(),
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("/s/__init__.py:3: provider 'rackspace'"),
            "{e}"
        );
        assert!(e.contains("openstack"), "{e}");
        assert!(check_provider(&Sourced {
            value: "hetzner".into(),
            layer: "-p".into()
        })
        .is_ok());
    }
}
