//! The catalogs of a token cloud (images, sizes, locations) as every such driver serves them:
//! `list-nodes --images/--sizes/--locations`, and the check of a deploy's image, size and
//! location before anything is created ([`crate::provider::http::catalog::resolve`]). A driver
//! says how to read its three lists and what it calls sizes and locations; the rest is here.

use crate::error::Result;
use crate::provider::http::catalog::{self, Labels};
use crate::provider::http::{natural_cmp, Candidate, Resolved};
use crate::provider::{Catalog, Prepared};

/// One token cloud's catalogs.
pub trait CloudCatalog {
    /// The driver's name, for errors.
    const PROVIDER: &'static str;
    /// What the provider calls sizes and locations, for errors.
    const LABELS: Labels;

    /// Every image as a candidate for the prefix rule, with its description.
    fn image_candidates(&self) -> Result<Vec<(Candidate, String)>>;
    /// `(name, description)` of every size.
    fn sizes(&self) -> Result<Vec<(String, String)>>;
    /// `(name, description)` of every location.
    fn locations(&self) -> Result<Vec<(String, String)>>;

    /// `(what to send, description)` of every image, in natural order.
    fn images(&self) -> Result<Vec<(String, String)>> {
        let mut v: Vec<_> = self
            .image_candidates()?
            .into_iter()
            .map(|(c, d)| (c.id, d))
            .collect();
        v.sort_by(|a, b| natural_cmp(&a.0, &b.0));
        Ok(v)
    }

    /// Checks image, size and location before anything is created; a wrong one is a config
    /// error with near matches. The image follows the prefix rule (see
    /// [`crate::provider::http::pick_image`]).
    fn resolve(&self, image: &str, size: &str, location: &str) -> Result<Resolved> {
        let images: Vec<Candidate> = self
            .image_candidates()?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        catalog::resolve(
            Self::PROVIDER,
            Self::LABELS,
            &images,
            &self.sizes()?,
            &self.locations()?,
            (image, size, location),
        )
    }

    /// [`crate::provider::Provider::catalog`].
    fn catalog_of(&self, kind: Catalog) -> Result<Vec<(String, String)>> {
        match kind {
            Catalog::Images => self.images(),
            Catalog::Sizes => self.sizes(),
            Catalog::Locations => self.locations(),
        }
    }

    /// [`crate::provider::Provider::prepare`].
    fn prepared(&self, image: &str, size: &str, location: &str) -> Result<Prepared> {
        let r = self.resolve(image, size, location)?;
        Ok(Prepared {
            image: r.image,
            size: r.size,
            location: r.location,
        })
    }
}
